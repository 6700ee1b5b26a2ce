"""shared.loops: a loop goes on past a failed round, and stops when cancelled, even when the
cancellation reached its round as another error (asyncmy's connect on Python 3.11)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from shared.loops import run_periodically, running

logger = logging.getLogger("shared.tests.loops")


async def test_a_failed_round_is_logged_and_the_next_one_runs() -> None:
    rounds: list[int] = []
    third = asyncio.Event()

    async def failing_twice() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 3:
            third.set()
        if len(rounds) <= 2:
            raise OSError("Redis away for a moment")

    task = asyncio.create_task(run_periodically(failing_twice, interval_seconds=0,
                                                logger=logger, what="test round"))
    try:
        await asyncio.wait_for(third.wait(), timeout=5)
    finally:
        task.cancel()
    assert rounds[:3] == [0, 1, 2]


async def test_a_cancellation_turned_into_an_error_still_stops_the_loop() -> None:
    started = asyncio.Event()

    async def converting() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise ConnectionRefusedError("Connect call failed") from None

    task = asyncio.create_task(run_periodically(converting, interval_seconds=3600,
                                                logger=logger, what="test round"))
    await started.wait()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert done, "the loop slept through its cancellation"
    assert task.cancelled()


async def test_wait_first_sleeps_before_the_first_round() -> None:
    ran: list[int] = []

    async def record() -> None:
        ran.append(1)

    task = asyncio.create_task(run_periodically(record, interval_seconds=3600, logger=logger,
                                                what="test round", wait_first=True))
    await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert done
    assert ran == []


async def test_running_starts_the_loops_and_leaves_none_behind_even_on_an_error() -> None:
    started: list[str] = []
    stopped: list[str] = []

    async def loop(name: str) -> None:
        started.append(name)
        try:
            await asyncio.Event().wait()
        finally:
            stopped.append(name)

    async def app_that_fails() -> None:
        async with running(loop("a"), loop("b")):
            await asyncio.sleep(0)
            assert started == ["a", "b"]
            raise RuntimeError("the app failed")

    with pytest.raises(RuntimeError):
        await app_that_fails()
    assert stopped == ["a", "b"]
