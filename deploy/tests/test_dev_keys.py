"""`make keys` writes one Ed25519 signing key and the identity key pairs into .env, in a form
compose reads back."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from deploy.dev_keys import PUBLIC_KEYS_VARIABLE, VARIABLE, ensure_keys
from shared.identity_keys import key_id, parse_private_key, parse_public_keys
from shared.services import SIGNERS

IDENTITY_VARIABLES = [f"{app.env_prefix}_IDENTITY_PRIVATE_KEY" for app in SIGNERS]


def test_keys_are_written_once_and_then_kept(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("LOG_LEVEL=DEBUG")

    assert ensure_keys(env_file) == [VARIABLE, *IDENTITY_VARIABLES, PUBLIC_KEYS_VARIABLE]
    first = env_file.read_text()
    assert ensure_keys(env_file) == []
    assert env_file.read_text() == first
    assert env_file.stat().st_mode & 0o077 == 0

    lines = first.splitlines()
    assert lines[0] == "LOG_LEVEL=DEBUG"
    values = dict(line.split("=", 1) for line in lines[1:])
    pem = values[VARIABLE].strip('"').replace("\\n", "\n")  # what compose's .env reader does
    assert isinstance(load_pem_private_key(pem.encode(), password=None), Ed25519PrivateKey)
    public = parse_public_keys(values[PUBLIC_KEYS_VARIABLE].strip("'"))
    for app, name in zip(SIGNERS, IDENTITY_VARIABLES, strict=True):
        key = parse_private_key(values[name].strip('"'))
        assert public[key_id(key.public_key())][0] == app.package


def test_missing_identity_keys_are_added_beside_an_existing_signing_key(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f'{VARIABLE}="kept"\n')
    assert ensure_keys(env_file) == [*IDENTITY_VARIABLES, PUBLIC_KEYS_VARIABLE]
    assert env_file.read_text().startswith(f'{VARIABLE}="kept"\n{IDENTITY_VARIABLES[0]}=')
