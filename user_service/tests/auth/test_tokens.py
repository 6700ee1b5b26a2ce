"""Signing keys and access tokens (auth/tokens.py): what the gateway relies on to verify them
without us."""

from __future__ import annotations

import re
import stat
import time
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key
from pydantic import ValidationError

from shared.testing.mail import MailSink
from user_service.auth.tokens import (
    DEV_KEY_FILENAME,
    TokenSigner,
    jwk_thumbprint,
    load_or_create_dev_key,
    parse_private_key,
)
from user_service.settings import Settings
from user_service.tests.conftest import SettingsFactory
from user_service.tests.helpers import running_app, signed_in


def _public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _private_pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def test_thumbprint_matches_rfc_8037_example() -> None:
    # RFC 8037 appendix A.2/A.3: the Ed25519 example key and its RFC 7638 thumbprint.
    raw = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    key = Ed25519PublicKey.from_public_bytes(raw)
    assert jwk_thumbprint(key) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


async def test_login_access_token_verifies_with_the_published_jwks(
    client: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=300"
    jwks = response.json()
    (published,) = jwks["keys"]
    assert set(published) == {"kty", "crv", "x", "kid", "alg", "use"}
    assert (published["kty"], published["crv"], published["alg"], published["use"]) == (
        "OKP", "Ed25519", "EdDSA", "sig",
    )

    before = int(time.time())
    _, tokens, headers = await signed_in(client, mail_sink)
    token = tokens["access_token"]
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "EdDSA", "typ": "at+jwt", "kid": published["kid"]}  # RFC 9068

    key = jwt.PyJWK(published)
    claims = jwt.decode(token, key.key, algorithms=["EdDSA"], audience="preorder-api",
                        issuer="preorder-user-service")
    assert claims["sub"] == headers["X-User-Id"]
    assert claims["sid"] == headers["X-Session-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", claims["sid"])
    assert len(claims["jti"]) == 32
    assert before <= claims["iat"] <= int(time.time())
    assert claims["exp"] == claims["iat"] + 900


async def test_jwks_publishes_previous_keys_during_a_rotation(
    make_settings: SettingsFactory,
) -> None:
    old_keys = [Ed25519PrivateKey.generate().public_key() for _ in range(2)]
    # As an environment variable would often carry it: one line with literal "\n"s.
    bundle = "".join(_public_pem(k) for k in old_keys).replace("\n", "\\n")
    async with running_app(make_settings(jwt_previous_public_keys=bundle)) as app:
        kids = [k["kid"] for k in (await app.client.get("/.well-known/jwks.json")).json()["keys"]]
    assert kids[1:] == [jwk_thumbprint(k) for k in old_keys]
    assert len(set(kids)) == 3


def test_dev_key_is_generated_once_with_private_mode_and_reused(tmp_path: Path) -> None:
    key_dir = tmp_path / "keys"
    settings = Settings(environment="development", jwt_key_dir=str(key_dir))
    first = TokenSigner.from_settings(settings)
    path = key_dir / DEV_KEY_FILENAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(key_dir.iterdir()) == [path]  # no temporary file left behind
    second = TokenSigner.from_settings(settings)
    assert first.kid == second.kid
    assert jwk_thumbprint(load_or_create_dev_key(key_dir).public_key()) == first.kid


def test_configured_key_wins_over_the_dev_key_dir(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    settings = Settings(jwt_private_key=_private_pem(key), jwt_key_dir=str(tmp_path / "unused"))
    assert TokenSigner.from_settings(settings).kid == jwk_thumbprint(key.public_key())
    assert not (tmp_path / "unused").exists()


def test_production_refuses_to_start_without_a_signing_key() -> None:
    database_url = "mysql+asyncmy://user_svc:s3cret@db:3306/preorder_user"
    redis_url = "redis://:s3cret@redis:6379/0"
    with pytest.raises(ValidationError, match="USER_JWT_PRIVATE_KEY"):
        Settings(environment="production", database_url=database_url, redis_url=redis_url)
    key = _private_pem(Ed25519PrivateKey.generate())
    assert Settings(environment="production", database_url=database_url, redis_url=redis_url,
                    jwt_private_key=key).is_production()


def test_non_ed25519_keys_are_refused() -> None:
    rsa_pem = generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    with pytest.raises(ValueError, match="Ed25519"):
        parse_private_key(rsa_pem)
