"""`make keys`: put a development JWT signing key into .env for `docker compose`.

Optional: without USER_JWT_PRIVATE_KEY, user-service generates a development key into its
jwt-keys volume. This writes a fresh Ed25519 key (user_service signs access tokens with EdDSA)
into the git-ignored .env instead, once, for those who want the key where they can see and keep
it; an existing key is kept so tokens already issued stay valid.
Never use a key made this way in production: take it from the deployment's secret store.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

REPO_ROOT = Path(__file__).resolve().parent.parent
VARIABLE = "USER_JWT_PRIVATE_KEY"


def new_private_key_pem() -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def dotenv_line(name: str, pem: str) -> str:
    """Compose's .env reader turns `\\n` inside double quotes back into newlines."""
    return f'{name}="{pem.strip()}"'.replace("\n", "\\n") + "\n"


def ensure_key(env_file: Path) -> bool:
    """Add a key to `env_file` unless it has one; True if one was added."""
    existing = env_file.read_text() if env_file.exists() else ""
    if any(line.startswith(f"{VARIABLE}=") for line in existing.splitlines()):
        return False
    if existing and not existing.endswith("\n"):
        existing += "\n"
    env_file.write_text(existing + dotenv_line(VARIABLE, new_private_key_pem()))
    env_file.chmod(0o600)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--env-file", type=Path, default=REPO_ROOT / ".env")
    args = parser.parse_args()
    if ensure_key(args.env_file):
        print(f"wrote a new development {VARIABLE} to {args.env_file}")
    else:
        print(f"{args.env_file} already has {VARIABLE}; kept it")


if __name__ == "__main__":
    main()
