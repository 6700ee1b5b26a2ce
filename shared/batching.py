"""One round trip for every request waiting at the same moment.

Per-request Redis questions (is this session revoked, is this caller over its limit, may this
buyer take a place in the line) and calls to another service (order_service's reserves of one
product) are asked by many requests at once at an opening; a subclass collects them and answers
them all from one flush, which runs once per turn of the event loop however many asked.

One flush runs at a time: what is asked while one runs waits for it and goes in the next, which
starts as soon as it ends. So answers come back in the order they were asked. Flushes run side by
side did not: a crowd's first batch (hundreds of requests, a long pipeline) came back after the
small batch of the next turn, and at an opening the gateway forwarded those later arrivals first
(`make load`: blocks of 26 to 40 later buyers went straight on and won while the 240 who came
just before them were still being checked). Waiting for the running flush also makes each batch
as large as the moment allows: a slow round trip collects more for the next.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from abc import ABC, abstractmethod

logger = logging.getLogger(__name__)


class FlushPerTurn(ABC):
    def __init__(self) -> None:
        self._flush_scheduled = False
        # The task running flushes one after another while anything is asked, kept so it is not
        # collected before it finishes.
        self._running: asyncio.Task[None] | None = None

    def schedule_flush(self) -> None:
        """Make sure one flush runs soon (after the running one, if any); callers that ask
        before it starts share it."""
        self._flush_scheduled = True
        # done(): a task cancelled before its first step never ran its `finally`.
        if self._running is None or self._running.done():
            # A context of its own: not the request's that happened to ask first (its request
            # id in the flush's log lines, its trace around every later batch's Redis call).
            self._running = asyncio.create_task(self._run_flushes(),
                                                context=contextvars.Context())

    async def _run_flushes(self) -> None:
        try:
            while self._flush_scheduled:
                self._flush_scheduled = False
                try:
                    await self.flush()
                except Exception:
                    # A subclass answers its own errors; one that escaped must not stop the
                    # flushes of everyone asking after it.
                    logger.exception("a batched flush failed")
        finally:
            self._running = None

    @abstractmethod
    async def flush(self) -> None:
        """Answer every question waiting now (taking them, so later ones wait for the next)."""
