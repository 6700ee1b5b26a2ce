"""Development keys. `make keys` puts them into .env for `docker compose`; `make run` keeps its
identity keys in .data/identity-keys/ (load_or_create_identity_keys), made on first run.

Optional for compose: without them, compose's development override applies (user-service
generates a JWT key into its jwt-keys volume; the identity keys are published `devonly-` ones,
which production refuses). This writes a fresh Ed25519 key (user_service signs access tokens
with EdDSA) and a fresh identity key pair for each app that signs (the gateway what it forwards,
a service its internal calls; every app gets all public keys, IDENTITY_PUBLIC_KEYS) into the
git-ignored .env instead, once, for those who want keys of their own; existing ones are kept so
tokens already issued stay valid.
Never use keys made this way in production: take them from the deployment's secret store.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from shared.identity_keys import (
    identity_environment,
    new_identity_keys,
    parse_private_key,
    private_key_text,
)
from shared.services import SIGNERS

REPO_ROOT = Path(__file__).resolve().parent.parent
VARIABLE = "USER_JWT_PRIVATE_KEY"
PUBLIC_KEYS_VARIABLE = "IDENTITY_PUBLIC_KEYS"
# One file per signing app (its package), its private key in base64url; the public keys are
# derived from them on every start.
IDENTITY_KEYS_DIRNAME = "identity-keys"


def new_private_key_pem() -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def new_identity_environment() -> dict[str, str]:
    """A fresh key pair for every app that signs: their private keys and IDENTITY_PUBLIC_KEYS."""
    return identity_environment(new_identity_keys(app.package for app in SIGNERS))


def load_or_create_identity_keys(data_dir: Path) -> dict[str, str]:
    """`make run`'s identity keys: one file per signing app under data_dir/identity-keys/,
    readable by its owner only, made on first run and kept across restarts (the environment
    that hands them to the apps)."""
    directory = data_dir / IDENTITY_KEYS_DIRNAME
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    keys = {}
    for app in SIGNERS:
        path = directory / f"{app.package}.key"
        if not path.exists():
            key = ed25519.Ed25519PrivateKey.generate()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(private_key_text(key))
        keys[app.package] = parse_private_key(path.read_text())
    return identity_environment(keys)


def dotenv_line(name: str, value: str) -> str:
    """Compose's .env reader turns `\\n` inside double quotes back into newlines; inside single
    quotes it takes everything as it is (the JSON of the public keys)."""
    if value.startswith("{"):
        return f"{name}='{value}'\n"
    return f'{name}="{value.strip()}"'.replace("\n", "\\n") + "\n"


# Each group is written whole or not at all: the identity keys belong together (the public keys
# are those of the private ones).
KEYS: dict[str, Callable[[], dict[str, str]]] = {
    VARIABLE: lambda: {VARIABLE: new_private_key_pem()},
    PUBLIC_KEYS_VARIABLE: new_identity_environment,
}


def ensure_keys(env_file: Path) -> list[str]:
    """Add each group of keys `env_file` lacks; returns the names of the variables added."""
    existing = env_file.read_text() if env_file.exists() else ""
    present = {line.split("=", 1)[0] for line in existing.splitlines() if "=" in line}
    added: dict[str, str] = {}
    for name, make in KEYS.items():
        if name not in present:
            group = make()
            if present & group.keys():
                raise SystemExit(f"{env_file} has some of {sorted(group)} but not {name}: "
                                 "remove them all to have a new set written")
            added.update(group)
    if not added:
        return []
    if existing and not existing.endswith("\n"):
        existing += "\n"
    env_file.write_text(existing + "".join(dotenv_line(n, v) for n, v in added.items()))
    env_file.chmod(0o600)
    return list(added)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--env-file", type=Path, default=REPO_ROOT / ".env")
    args = parser.parse_args()
    added = ensure_keys(args.env_file)
    for name in KEYS:
        print(f"wrote new development keys ({name} and its group) to {args.env_file}"
              if name in added else f"{args.env_file} already has {name}; kept it")


if __name__ == "__main__":
    main()
