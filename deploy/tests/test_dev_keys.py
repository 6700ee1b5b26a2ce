"""`make keys` writes one Ed25519 signing key and one identity signing secret into .env, in a
form compose reads back."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from deploy.dev_keys import IDENTITY_VARIABLE, VARIABLE, ensure_keys
from shared.settings import MIN_IDENTITY_KEY_LENGTH


def test_keys_are_written_once_and_then_kept(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("LOG_LEVEL=DEBUG")

    assert ensure_keys(env_file) == [VARIABLE, IDENTITY_VARIABLE]
    first = env_file.read_text()
    assert ensure_keys(env_file) == []
    assert env_file.read_text() == first
    assert env_file.stat().st_mode & 0o077 == 0

    lines = first.splitlines()
    assert lines[0] == "LOG_LEVEL=DEBUG"
    name, quoted = lines[1].split("=", 1)
    assert name == VARIABLE
    pem = quoted.strip('"').replace("\\n", "\n")  # what compose's .env reader does
    assert isinstance(load_pem_private_key(pem.encode(), password=None), Ed25519PrivateKey)
    name, quoted = lines[2].split("=", 1)
    assert name == IDENTITY_VARIABLE
    assert len(quoted.strip('"')) >= MIN_IDENTITY_KEY_LENGTH


def test_a_missing_identity_key_is_added_beside_an_existing_signing_key(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f'{VARIABLE}="kept"\n')
    assert ensure_keys(env_file) == [IDENTITY_VARIABLE]
    assert env_file.read_text().startswith(f'{VARIABLE}="kept"\n{IDENTITY_VARIABLE}=')
