"""The sold-out memory refuses what it saw refused, for as long as it was told, no longer."""

from __future__ import annotations

import time

import pytest

from shared.sold_out import SoldOutMemory


def test_refuses_that_many_or_more_until_it_lapses(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    memory = SoldOutMemory(0.25)
    memory.remember(7, 3)
    assert memory.refuses(7, 3)
    assert memory.refuses(7, 5)
    assert not memory.refuses(7, 2)  # two may still be left
    assert not memory.refuses(8, 3)  # another product
    memory.remember(7, 1)
    assert memory.refuses(7, 1)
    now[0] += 0.25
    assert not memory.refuses(7, 1)


def test_forgetting_and_a_zero_length_memory() -> None:
    memory = SoldOutMemory(10)
    memory.remember(1, 1)
    memory.forget(1)
    assert not memory.refuses(1, 1)
    off = SoldOutMemory(0)
    off.remember(1, 1)
    assert not off.refuses(1, 1)
