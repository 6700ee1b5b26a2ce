"""The sold-out memory refuses what it saw refused, for as long as it was told, and lets one
request ask again when it lapses."""

from __future__ import annotations

import time

import pytest

from shared.sold_out import SoldOutMemory


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


def test_a_zero_length_memory_remembers_nothing() -> None:
    off = SoldOutMemory(0)
    off.remember(1, 1)
    assert not off.refuses(1, 1)
