"""`make keys`: put development keys into .env for `docker compose`.

Optional: without them, compose's development defaults apply (user-service generates a JWT key
into its jwt-keys volume; the identity signing key is a `devonly-` placeholder, which production
refuses). This writes a fresh Ed25519 key (user_service signs access tokens with EdDSA) and a
random identity signing secret (the gateway signs the identity it forwards to the services with
it) into the git-ignored .env instead, once each, for those who want keys of their own; an
existing one is kept so tokens already issued stay valid.
Never use keys made this way in production: take them from the deployment's secret store.
"""

from __future__ import annotations

import argparse
import secrets
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

REPO_ROOT = Path(__file__).resolve().parent.parent
VARIABLE = "USER_JWT_PRIVATE_KEY"
IDENTITY_VARIABLE = "IDENTITY_SIGNING_KEY"


def new_private_key_pem() -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def new_identity_key() -> str:
    return secrets.token_urlsafe(32)


KEYS: dict[str, Callable[[], str]] = {VARIABLE: new_private_key_pem,
                                      IDENTITY_VARIABLE: new_identity_key}


def dotenv_line(name: str, pem: str) -> str:
    """Compose's .env reader turns `\\n` inside double quotes back into newlines."""
    return f'{name}="{pem.strip()}"'.replace("\n", "\\n") + "\n"


def ensure_keys(env_file: Path) -> list[str]:
    """Add each key `env_file` lacks; returns the names of those added."""
    existing = env_file.read_text() if env_file.exists() else ""
    present = {line.split("=", 1)[0] for line in existing.splitlines() if "=" in line}
    added = [name for name in KEYS if name not in present]
    if not added:
        return []
    if existing and not existing.endswith("\n"):
        existing += "\n"
    env_file.write_text(existing + "".join(dotenv_line(name, KEYS[name]()) for name in added))
    env_file.chmod(0o600)
    return added


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--env-file", type=Path, default=REPO_ROOT / ".env")
    args = parser.parse_args()
    added = ensure_keys(args.env_file)
    for name in KEYS:
        print(f"wrote a new development {name} to {args.env_file}" if name in added
              else f"{args.env_file} already has {name}; kept it")


if __name__ == "__main__":
    main()
