"""The sold-out memory refuses what it saw refused, for as long as it was told, and lets one
request ask again when it lapses; the in-flight limit queues the crowd behind a few calls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from shared.sold_out import InFlightLimit, SlotTimeout, SoldOutMemory, Verdict


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    return now


def test_refuses_that_many_or_more_while_it_lasts(clock: list[float]) -> None:
    memory = SoldOutMemory(0.25)
    memory.remember(7, 3)
    assert memory.refuses(7, 3)
    assert memory.refuses(7, 5)
    assert not memory.refuses(7, 2)  # two may still be left
    assert not memory.refuses(8, 3)  # another product
    memory.remember(7, 1)
    assert memory.refuses(7, 1)


def test_when_it_lapses_one_request_asks_and_the_crowd_waits_for_its_answer(
    clock: list[float],
) -> None:
    memory = SoldOutMemory(0.25)
    memory.remember(7, 1)
    clock[0] += 0.25
    assert not memory.refuses(7, 1)  # this one asks Redis
    assert memory.refuses(7, 1)  # the others are still refused meanwhile
    memory.remember(7, 1)  # the answer: still sold out
    clock[0] += 0.1
    assert memory.refuses(7, 1)
    clock[0] += 0.15
    assert not memory.refuses(7, 1)  # asks again
    memory.forget(7)  # the answer: a unit was held
    assert not memory.refuses(7, 1)


def test_an_asker_that_never_answers_is_replaced_after_a_period(clock: list[float]) -> None:
    memory = SoldOutMemory(0.25)
    memory.remember(7, 1)
    clock[0] += 0.25
    assert not memory.refuses(7, 1)
    clock[0] += 0.2
    assert memory.refuses(7, 1)
    clock[0] += 0.05
    assert not memory.refuses(7, 1)


def test_the_request_chosen_to_ask_is_told_so(clock: list[float]) -> None:
    """A caller that checks the memory twice (before and after waiting its turn) must know the
    first answer made it the asker: its second look sees the flag it set itself."""
    memory = SoldOutMemory(0.25)
    assert memory.verdict(7, 1) is Verdict.FREE
    memory.remember(7, 1)
    assert memory.verdict(7, 1) is Verdict.REFUSE
    clock[0] += 0.25
    assert memory.verdict(7, 1) is Verdict.ASK
    assert memory.verdict(7, 1) is Verdict.REFUSE  # the crowd, while that one asks
    assert memory.still_refuses(7, 1)  # a second look cannot tell the asker from the crowd


def test_a_zero_length_memory_remembers_nothing() -> None:
    off = SoldOutMemory(0)
    off.remember(1, 1)
    assert not off.refuses(1, 1)


async def test_in_flight_limit_lets_that_many_through_per_key_and_queues_the_rest() -> None:
    limit = InFlightLimit(2, wait_seconds=5)
    inside: list[int] = []
    most = 0
    release = asyncio.Event()

    async def call(key: int) -> None:
        nonlocal most
        async with limit.slot(key):
            inside.append(key)
            most = max(most, inside.count(7))
            await release.wait()
            inside.remove(key)

    tasks = [asyncio.create_task(call(7)) for _ in range(5)] + [asyncio.create_task(call(8))]
    await asyncio.sleep(0.01)
    assert sorted(inside) == [7, 7, 8]  # two of product 7, and product 8 is not held up
    release.set()
    await asyncio.gather(*tasks)
    assert most == 2
    assert inside == []
    assert limit._slots == {}  # nothing kept once nobody waits


async def test_in_flight_limit_gives_up_waiting_and_frees_the_slot_it_never_had() -> None:
    limit = InFlightLimit(1, wait_seconds=0.05)
    held = asyncio.Event()
    done = asyncio.Event()

    async def holder() -> None:
        async with limit.slot(7):
            held.set()
            await done.wait()

    task = asyncio.create_task(holder())
    await held.wait()
    with pytest.raises(SlotTimeout):
        async with limit.slot(7):
            pass
    done.set()
    await task
    async with limit.slot(7):  # the slot is free again, and only one was ever taken
        pass
    assert limit._slots == {}


@asynccontextmanager
async def only_slot_held(limit: InFlightLimit, key: int) -> AsyncIterator[asyncio.Event]:
    """`key`'s one slot held by a call in flight until the event is set (or the block ends)."""
    done = asyncio.Event()

    async def holder() -> None:
        async with limit.slot(key):
            await done.wait()

    task = asyncio.create_task(holder())
    await asyncio.sleep(0.01)
    try:
        yield done
    finally:
        done.set()
        await task


async def test_a_turn_taken_in_front_is_the_slot_the_route_then_uses() -> None:
    limit = InFlightLimit(1, wait_seconds=5)
    order: list[str] = []

    async def request_waiting_in_front(name: str) -> None:
        turn = await limit.take_turn(7)
        assert turn is not None
        order.append(name)
        # Its route, handed the slot: no second wait (with one slot, a second wait would be
        # for itself).
        async with limit.slot(7, taken=turn):
            await asyncio.sleep(0.01)
        turn.give_back()  # used by the route: nothing more to give back

    async def request_in_the_route(name: str) -> None:
        async with limit.slot(7):
            order.append(name)
            await asyncio.sleep(0.01)

    async with only_slot_held(limit, 7) as done:
        first = asyncio.create_task(request_waiting_in_front("front 1"))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(request_in_the_route("route"))
        await asyncio.sleep(0.01)
        third = asyncio.create_task(request_waiting_in_front("front 2"))
        await asyncio.sleep(0.01)
        assert limit.busy(7)
        done.set()
        await asyncio.wait_for(asyncio.gather(first, second, third), 2)
    assert order == ["front 1", "route", "front 2"]  # one queue, first come first served
    assert limit._slots == {}


async def test_a_turn_the_route_never_used_is_given_back() -> None:
    limit = InFlightLimit(1, wait_seconds=5)

    async def refused_in_front() -> None:
        turn = await limit.take_turn(7)
        assert turn is not None
        turn.give_back()
        turn.give_back()  # once only

    await asyncio.wait_for(asyncio.create_task(refused_in_front()), 1)
    assert limit._slots == {}
    async with limit.slot(7):  # the slot is free again
        pass


async def test_a_slot_for_another_key_is_not_used_in_its_place() -> None:
    limit = InFlightLimit(1, wait_seconds=0.05)
    turn = await limit.take_turn(8)
    assert turn is not None
    async with limit.slot(7, taken=turn):  # a slot of 7 of its own; 8's is still held
        assert limit.busy(8)
    assert limit.busy(8)
    turn.give_back()
    assert limit._slots == {}


async def test_a_turn_not_come_in_time_is_none_and_leaves_nothing() -> None:
    limit = InFlightLimit(1, wait_seconds=0.05)
    async with only_slot_held(limit, 7):
        assert await limit.take_turn(7) is None
        cancelled = asyncio.create_task(limit.take_turn(7))
        await asyncio.sleep(0.01)
        cancelled.cancel()  # the client went away
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert limit._users == {7: 1}  # only the holder
    assert (limit._slots, limit._users) == ({}, {})
