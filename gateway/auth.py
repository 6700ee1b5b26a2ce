"""Access-token verification: EdDSA keys from user_service's JWKS, pinned algorithm, revocation.

user_service alone holds the private key. The gateway keeps the public keys as key objects,
refetching the JWKS when a token names a kid it does not know, so keys rotate without downtime.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm
from redis.asyncio import Redis

logger = logging.getLogger("gateway.auth")

ALGORITHMS = ["EdDSA"]
REQUIRED_CLAIMS = ["exp", "iat", "sub", "jti", "sid"]
# Contract with user_service (user_service/auth/revocation.py): a session's access tokens
# are refused while this key exists.
REVOKED_SESSION_KEY = "auth:revoked-session:{sid}"
_SID = re.compile(r"^[0-9a-f]{32}$")
_MAX_TOKEN_LENGTH = 4096


class TokenRejected(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: int
    session_id: str


class JwksCache:
    def __init__(self, url: str, session: aiohttp.ClientSession, *, refetch_interval: float) -> None:
        self.url = url
        self.session = session
        self.refetch_interval = refetch_interval
        self.keys: dict[str, Ed25519PublicKey] = {}
        self._last_fetch = 0.0
        self._lock = asyncio.Lock()

    async def get(self, kid: str) -> Ed25519PublicKey | None:
        key = self.keys.get(kid)
        if key is not None:
            return key
        async with self._lock:
            if kid not in self.keys and time.monotonic() - self._last_fetch >= self.refetch_interval:
                await self.fetch()
        return self.keys.get(kid)

    async def fetch(self) -> None:
        self._last_fetch = time.monotonic()
        try:
            async with self.session.get(self.url, timeout=aiohttp.ClientTimeout(total=3)) as resp:
                resp.raise_for_status()
                document = await resp.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            logger.warning("JWKS fetch failed", extra={"url": self.url, "error": repr(exc)})
            return
        self.keys = parse_jwks(document) or self.keys


def parse_jwks(document: Any) -> dict[str, Ed25519PublicKey]:
    keys: dict[str, Ed25519PublicKey] = {}
    for jwk in document.get("keys", []) if isinstance(document, dict) else []:
        if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue
        kid = jwk.get("kid")
        if not isinstance(kid, str):
            continue
        try:
            key = OKPAlgorithm.from_jwk(json.dumps(jwk))
        except (jwt.InvalidKeyError, ValueError):
            continue
        if isinstance(key, Ed25519PublicKey):
            keys[kid] = key
    return keys


class TokenVerifier:
    def __init__(self, jwks: JwksCache, redis: Redis, *, issuer: str, audience: str,
                 leeway: int) -> None:
        self.jwks = jwks
        self.redis = redis
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway

    async def verify(self, authorization: str | None) -> Identity:
        if not authorization:
            raise TokenRejected("missing_token", "An Authorization: Bearer token is required.")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise TokenRejected("missing_token", "An Authorization: Bearer token is required.")
        if len(token) > _MAX_TOKEN_LENGTH:
            raise TokenRejected("invalid_token", "The access token is not valid.")
        identity = await self._decode(token)
        if await self.redis.exists(REVOKED_SESSION_KEY.format(sid=identity.session_id)):
            raise TokenRejected("token_revoked", "The access token has been revoked.")
        return identity

    async def _decode(self, token: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise TokenRejected("invalid_token", "The access token is not valid.") from None
        # Checked before any key is chosen: `none`, HS256 with the public key as secret and
        # every other algorithm are refused outright.
        kid = header.get("kid")
        if header.get("alg") not in ALGORITHMS or not isinstance(kid, str):
            raise TokenRejected("invalid_token", "The access token is not valid.")
        key = await self.jwks.get(kid)
        if key is None:
            raise TokenRejected("invalid_token", "The access token was signed by an unknown key.")
        try:
            claims = jwt.decode(
                token, key, algorithms=ALGORITHMS, audience=self.audience, issuer=self.issuer,
                leeway=self.leeway, options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("token_expired", "The access token has expired.") from None
        except jwt.InvalidTokenError:
            raise TokenRejected("invalid_token", "The access token is not valid.") from None
        sub, sid = claims["sub"], claims["sid"]
        if not (isinstance(sub, str) and sub.isdigit() and 0 < int(sub) < 2**53):
            raise TokenRejected("invalid_token", "The access token is not valid.")
        if not (isinstance(sid, str) and _SID.match(sid)):
            raise TokenRejected("invalid_token", "The access token is not valid.")
        return Identity(user_id=int(sub), session_id=sid)
