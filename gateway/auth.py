"""Access-token verification: EdDSA keys from user_service's JWKS, pinned algorithm, revocation.

user_service alone holds the private key. The gateway keeps the public keys as key objects,
refetching the JWKS when a token names a kid it does not know, so keys rotate without downtime.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm
from redis.asyncio import Redis

from shared.contracts import is_session_id, parse_user_id, revoked_session_key

logger = logging.getLogger("gateway.auth")

ALGORITHMS = ["EdDSA"]
REQUIRED_CLAIMS = ["exp", "iat", "sub", "jti", "sid"]
_MAX_TOKEN_LENGTH = 4096


class TokenRejected(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class KeysUnavailable(Exception):
    """No verification key has ever been fetched (user_service unreachable): no token can be
    judged, so the answer is 503, not a 401 that would make clients drop a good token."""


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: int
    session_id: str
    expires_at: float


class VerifiedTokens:
    """Tokens whose signature and claims already checked out, until they expire.

    A client sends the same access token on every request for its whole life; checking the
    Ed25519 signature once instead of every time takes the largest cost off the hot path.
    Revocation is not cached: it is checked on every request. Bounded; oldest entries go first.
    """

    def __init__(self, max_entries: int = 20_000) -> None:
        self.max_entries = max_entries
        self._entries: dict[str, Identity] = {}

    def get(self, token: str, now: float) -> Identity | None:
        identity = self._entries.get(token)
        if identity is not None and identity.expires_at <= now:
            del self._entries[token]
            return None
        return identity

    def put(self, token: str, identity: Identity) -> None:
        if len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[token] = identity

    def clear(self) -> None:
        self._entries.clear()


class JwksCache:
    def __init__(self, url: str, session: aiohttp.ClientSession, *, refetch_interval: float) -> None:
        self.url = url
        self.session = session
        self.refetch_interval = refetch_interval
        self.keys: dict[str, Ed25519PublicKey] = {}
        self.on_key_removed: list[Callable[[], None]] = []
        self._last_fetch = 0.0
        self._lock = asyncio.Lock()

    async def get(self, kid: str) -> Ed25519PublicKey | None:
        key = self.keys.get(kid)
        if key is not None:
            return key
        # With no keys at all (user_service was not up at our start) retry much sooner.
        interval = self.refetch_interval if self.keys else min(self.refetch_interval, 1.0)
        async with self._lock:
            if kid not in self.keys and time.monotonic() - self._last_fetch >= interval:
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
        keys = parse_jwks(document)
        if keys:
            self.apply(keys)

    def apply(self, keys: dict[str, Ed25519PublicKey]) -> None:
        if set(self.keys) - set(keys):
            # A key was withdrawn (perhaps compromised): tokens it signed must be checked again.
            for listener in self.on_key_removed:
                listener()
        self.keys = keys


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


class RevocationList:
    """Asks Redis whether sessions are revoked, one MGET for all requests waiting at that moment.

    Each request still gets an answer read after it asked (a logout that finished before the
    request is always seen); concurrent requests just share the round trip and its parsing.
    """

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._waiting: dict[str, list[asyncio.Future[bool]]] = {}
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def is_revoked(self, session_id: str) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(session_id, []).append(future)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            task = asyncio.create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _flush(self) -> None:
        batch, self._waiting = self._waiting, {}
        self._flush_scheduled = False
        session_ids = list(batch)
        try:
            found = await self.redis.mget([revoked_session_key(s) for s in session_ids])
        except Exception as exc:
            for futures in batch.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            return
        for session_id, value in zip(session_ids, found, strict=True):
            for future in batch[session_id]:
                if not future.done():
                    future.set_result(value is not None)


class TokenVerifier:
    def __init__(self, jwks: JwksCache, redis: Redis, *, issuer: str, audience: str,
                 leeway: int) -> None:
        self.jwks = jwks
        self.revocations = RevocationList(redis)
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.verified = VerifiedTokens()
        jwks.on_key_removed.append(self.verified.clear)

    async def verify(self, authorization: str | None) -> Identity:
        if not authorization:
            raise TokenRejected("missing_token", "An Authorization: Bearer token is required.")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise TokenRejected("missing_token", "An Authorization: Bearer token is required.")
        if len(token) > _MAX_TOKEN_LENGTH:
            raise TokenRejected("invalid_token", "The access token is not valid.")
        identity = self.verified.get(token, time.time() - self.leeway)
        if identity is None:
            identity = await self._decode(token)
            self.verified.put(token, identity)
        if await self.revocations.is_revoked(identity.session_id):
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
        if key is None and not self.jwks.keys:
            raise KeysUnavailable
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
        user_id, sid = parse_user_id(claims["sub"]), claims["sid"]
        if user_id is None or not is_session_id(sid):
            raise TokenRejected("invalid_token", "The access token is not valid.")
        return Identity(user_id=user_id, session_id=sid, expires_at=float(claims["exp"]))
