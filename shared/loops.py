"""Background loops, run the same way in every service: started and stopped by the lifespan
(cancelled), a failed round logged and tried again next time, each round timed on the
process's loop metrics (shared/sale_metrics.py LOOPS: the lag an alert watches)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from shared.sale_metrics import LOOPS


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
                           wait_first: bool = False, loop: str | None = None) -> None:
    """`round_` every `interval_seconds` until cancelled. An error in a round (MySQL, Redis or
    another service away for a moment) is logged, and the next round tries again. `loop`: the
    name its metrics carry (the `loop` label), `what` if not given."""
    name = loop or what
    LOOPS.started(name)
    try:
        if wait_first:
            await asyncio.sleep(interval_seconds)
        while True:
            began = time.monotonic()
            failed = False
            try:
                await round_()
            except Exception:
                failed = True
                logger.exception("%s failed", what)
            LOOPS.round_ended(name, time.monotonic() - began, failed=failed)
            stop_if_cancelled()
            await asyncio.sleep(interval_seconds)
    finally:
        LOOPS.stopped(name)


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
