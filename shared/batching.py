"""One Redis round trip for every request waiting at the same moment.

Per-request Redis questions (is this session revoked, is this caller over its limit, may this
buyer take a place in the line) are asked by many requests at once at an opening; a subclass
collects them and answers them all from one flush, which runs once per turn of the event loop
however many asked.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod


class FlushPerTurn(ABC):
    def __init__(self) -> None:
        self._flush_scheduled = False
        # The running flush tasks, kept so they are not collected before they finish.
        self._tasks: set[asyncio.Task[None]] = set()

    def schedule_flush(self) -> None:
        """Make sure one flush runs soon; callers that ask before it starts share it."""
        if self._flush_scheduled:
            return
        self._flush_scheduled = True
        task = asyncio.create_task(self._run_flush())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_flush(self) -> None:
        self._flush_scheduled = False
        await self.flush()

    @abstractmethod
    async def flush(self) -> None:
        """Answer every question waiting now (taking them, so later ones wait for the next)."""
