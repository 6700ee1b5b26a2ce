"""Access-token signing: Ed25519 keys (loaded once at startup), EdDSA JWTs and the published JWKS.

The gateway verifies these tokens with the JWKS alone, so the header (alg EdDSA, typ at+jwt,
kid = RFC 7638 thumbprint) and the claims (iss, aud, sub, sid, jti, iat, exp) are a contract.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.contracts import ACCESS_TOKEN_TYPE
from user_service.settings import Settings

DEV_KEY_FILENAME = "signing-key.pem"
_PEM_BLOCK = re.compile(
    r"-----BEGIN PUBLIC KEY-----\s.*?-----END PUBLIC KEY-----", re.DOTALL
)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _raw_public_bytes(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def jwk_thumbprint(public_key: Ed25519PublicKey) -> str:
    """RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace."""
    canonical = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": _b64url(_raw_public_bytes(public_key))},
        separators=(",", ":"),
        sort_keys=True,
    )
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def public_jwk(public_key: Ed25519PublicKey) -> dict[str, str]:
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": _b64url(_raw_public_bytes(public_key)),
        "kid": jwk_thumbprint(public_key),
        "alg": "EdDSA",
        "use": "sig",
    }


def _pem_text(value: str) -> bytes:
    # Environment variables often carry PEMs with literal "\n" instead of line breaks.
    if "\n" not in value and "\\n" in value:
        value = value.replace("\\n", "\n")
    return value.strip().encode("ascii")


def parse_private_key(pem: str) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(_pem_text(pem), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("USER_JWT_PRIVATE_KEY must be an Ed25519 private key")
    return key


def parse_public_keys(pem_bundle: str) -> list[Ed25519PublicKey]:
    blocks = _PEM_BLOCK.findall(_pem_text(pem_bundle).decode("ascii"))
    if not blocks:
        raise ValueError("USER_JWT_PREVIOUS_PUBLIC_KEYS holds no PEM public key")
    keys = []
    for block in blocks:
        key = serialization.load_pem_public_key(block.encode("ascii"))
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("USER_JWT_PREVIOUS_PUBLIC_KEYS may hold only Ed25519 public keys")
        keys.append(key)
    return keys


def load_or_create_dev_key(key_dir: Path) -> Ed25519PrivateKey:
    """Development only: one generated key per checkout, so tokens survive a restart."""
    path = key_dir / DEV_KEY_FILENAME
    if not path.exists():
        key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # Written whole under a temporary name, then linked into place: several workers
        # starting at once agree on one key and none reads a half-written file.
        temporary = key_dir / f".{DEV_KEY_FILENAME}.{os.getpid()}.{uuid.uuid4().hex}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
            # Another worker won the race: its key is as good as ours.
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    return parse_private_key(path.read_text(encoding="ascii"))


class TokenSigner:
    """Signs access tokens with the current key and publishes it with the retired ones."""

    def __init__(
        self,
        signing_key: Ed25519PrivateKey,
        *,
        previous_public_keys: Sequence[Ed25519PublicKey] = (),
        issuer: str,
        audience: str,
        access_token_ttl_seconds: int,
    ) -> None:
        self._signing_key = signing_key
        self.kid = jwk_thumbprint(signing_key.public_key())
        self.issuer = issuer
        self.audience = audience
        self.access_token_ttl_seconds = access_token_ttl_seconds
        published = [signing_key.public_key(), *previous_public_keys]
        keys: list[dict[str, str]] = []
        for key in published:
            jwk = public_jwk(key)
            if all(existing["kid"] != jwk["kid"] for existing in keys):
                keys.append(jwk)
        # Rendered once: the JWKS never changes while the process lives.
        self.jwks_body = json.dumps({"keys": keys}, separators=(",", ":")).encode("ascii")

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenSigner:
        if settings.jwt_private_key is not None:
            signing_key = parse_private_key(settings.jwt_private_key.get_secret_value())
        else:
            # Settings already refused production without a key.
            signing_key = load_or_create_dev_key(Path(settings.jwt_key_dir))
        previous = (
            parse_public_keys(settings.jwt_previous_public_keys)
            if settings.jwt_previous_public_keys
            else []
        )
        return cls(
            signing_key,
            previous_public_keys=previous,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            access_token_ttl_seconds=settings.access_token_ttl_seconds,
        )

    def issue_access_token(self, *, user_id: int, session_id: str,
                           roles: Sequence[str] = ()) -> str:
        issued_at = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(user_id),
            "sid": session_id,
            "jti": uuid.uuid4().hex,
            "iat": issued_at,
            "exp": issued_at + self.access_token_ttl_seconds,
        }
        if roles:
            # Read at login and refresh (user_service.roles.service says why that is enough).
            claims["roles"] = sorted(roles)
        return jwt.encode(
            claims, self._signing_key, algorithm="EdDSA",
            # RFC 9068: an access token says so, and is never taken for another kind of JWT.
            headers={"kid": self.kid, "typ": ACCESS_TOKEN_TYPE},
        )
