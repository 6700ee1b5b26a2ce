"""Revoked sessions as the gateway reads them (the keys are shared.contracts.REVOKED_SESSION_KEY
and REVOCATION_EPOCH_KEY)."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from shared.contracts import REVOCATION_EPOCH_KEY, revoked_session_key


class RevocationStateMissing(Exception):
    """Redis has lost the revoked sessions (the epoch key is gone): no token can be judged
    until user_service has published them again from MySQL."""


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
