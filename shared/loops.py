"""Background loops, run the same way in every service: started and stopped by the lifespan
(cancelled), a failed round logged and tried again next time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any


def stop_if_cancelled() -> None:
    """Raises CancelledError if the current task was asked to stop but is still running: code
    underneath turned the cancellation into another error. On Python 3.11, asyncio.wait_for
    (asyncmy's connect uses it) can hand back the inner outcome instead of CancelledError when
    the two meet (CPython gh-86296); a loop that logs that error and sleeps its interval would
    hang its app's shutdown for the whole interval."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError()


async def run_periodically(round_: Callable[[], Awaitable[object]], *, interval_seconds: float,
                           logger: logging.Logger, what: str,
                           wait_first: bool = False) -> None:
    """`round_` every `interval_seconds` until cancelled. An error in a round (MySQL, Redis or
    another service away for a moment) is logged, and the next round tries again."""
    if wait_first:
        await asyncio.sleep(interval_seconds)
    while True:
        try:
            await round_()
        except Exception:
            logger.exception("%s failed", what)
        stop_if_cancelled()
        await asyncio.sleep(interval_seconds)


@asynccontextmanager
async def running(*loops: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """The lifespan's background loops: started on entry; on exit each is cancelled and
    awaited, so none outlives the datastores it uses."""
    tasks = [asyncio.create_task(loop) for loop in loops]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
