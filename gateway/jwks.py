"""user_service's public keys as the gateway holds them: the JWKS fetched, parsed into key
objects, refetched on an unknown kid and now and then regardless."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm

from shared.loops import run_periodically

logger = logging.getLogger("gateway.jwks")


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


async def refresh_periodically(jwks: JwksCache, interval: float) -> None:
    """An unknown kid brings a new key in at once; only a refetch now and then notices a key
    that was withdrawn (say, after a leak) without a new one being used yet."""
    await run_periodically(jwks.fetch, interval_seconds=interval, logger=logger,
                           what="refetching the JWKS", wait_first=True)
