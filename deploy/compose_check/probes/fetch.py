"""`python - URL`: print the body of GET URL (from inside the compose network)."""

from __future__ import annotations

import sys
import urllib.request


def main() -> None:
    # Only ever the compose network's own services, named by the check.
    with urllib.request.urlopen(sys.argv[1], timeout=10) as response:  # noqa: S310
        sys.stdout.write(response.read().decode())


if __name__ == "__main__":
    main()
