"""Revoked sessions as the gateway reads them (the keys are shared.contracts.REVOKED_SESSION_KEY
and REVOCATION_EPOCH_KEY)."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from gateway.batching import FlushPerTurn
from shared.contracts import REVOCATION_EPOCH_KEY, revoked_session_key


class RevocationStateMissing(Exception):
    """Redis has lost the revoked sessions (the epoch key is gone): no token can be judged
    until user_service has published them again from MySQL."""


class RevocationList(FlushPerTurn):
    """Asks Redis whether sessions are revoked, one MGET for all requests waiting at that moment.

    Each request still gets an answer read after it asked (a logout that finished before the
    request is always seen); concurrent requests just share the round trip and its parsing.
    """

    def __init__(self, redis: Redis) -> None:
        super().__init__()
        self.redis = redis
        self._waiting: dict[str, list[asyncio.Future[bool]]] = {}

    async def is_revoked(self, session_id: str) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(session_id, []).append(future)
        self.schedule_flush()
        return await future

    async def flush(self) -> None:
        batch, self._waiting = self._waiting, {}
        session_ids = list(batch)
        try:
            # The epoch key in the same round trip: its absence means the answers below could
            # be missing revocations.
            epoch, *found = await self.redis.mget(
                [REVOCATION_EPOCH_KEY, *(revoked_session_key(s) for s in session_ids)])
            if epoch is None:
                raise RevocationStateMissing
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
