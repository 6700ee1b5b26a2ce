"""EdgeFinals (shared/edge_finals.py): what a gateway holds of the final states it heard."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from shared import edge_finals
from shared.edge_finals import EdgeFinals


def message(*entries: tuple[str, str, object], ttl_ms: int = 60_000) -> str:
    return json.dumps({"ttl_ms": ttl_ms, "finals": [list(entry) for entry in entries]})


def test_a_final_is_its_owners_only_and_rendered_compact() -> None:
    finals = EdgeFinals()
    finals.heard(message(("/t/1", "42", {"state": "ordered", "order": {"id": 5}})))
    assert finals.final_for("/t/1", "42") == b'{"state":"ordered","order":{"id":5}}'
    assert finals.final_for("/t/1", "43") is None
    assert finals.final_for("/t/2", "42") is None


def test_past_its_time_a_final_is_forgotten() -> None:
    finals = EdgeFinals()
    finals.heard(message(("/t/1", "42", {}), ttl_ms=20))
    assert finals.final_for("/t/1", "42") == b"{}"
    time.sleep(0.05)
    assert finals.final_for("/t/1", "42") is None
    assert len(finals) == 0


def test_beyond_the_most_it_holds_the_oldest_are_forgotten_first() -> None:
    finals = EdgeFinals(max_held=2)
    finals.heard(message(("/t/1", "1", {}), ("/t/2", "2", {})))
    finals.heard(message(("/t/3", "3", {})))
    assert [finals.final_for(f"/t/{n}", str(n)) for n in (1, 2, 3)] == [None, b"{}", b"{}"]


def test_a_message_not_understood_changes_nothing() -> None:
    finals = EdgeFinals()
    finals.heard(message(("/t/1", "42", {})))
    for raw in ("not json", '{"finals": []}', '{"ttl_ms": 5, "finals": [["/t/2"]]}', "[]"):
        finals.heard(raw)
    assert len(finals) == 1


def pending(*entries: tuple[str, str, object]) -> str:
    return json.dumps({"ttl_ms": 60_000, "finals": [],
                       "pending": [list(entry) for entry in entries]})


def test_a_pending_state_is_its_owners_until_its_final_is_heard() -> None:
    finals = EdgeFinals()
    finals.heard(pending(("/t/1", "42", {"state": "waiting", "position": 3})))
    assert finals.pending_for("/t/1", "42") == b'{"state":"waiting","position":3}'
    assert finals.pending_for("/t/1", "43") is None
    assert finals.final_for("/t/1", "42") is None  # pending is no final
    finals.heard(message(("/t/1", "42", {"state": "ordered"})))
    assert finals.pending_for("/t/1", "42") is None
    assert finals.final_for("/t/1", "42") == b'{"state":"ordered"}'


def test_a_pending_state_heard_after_its_final_is_not_taken() -> None:
    """A final is final: a pending state of the same path heard later (a message reordered
    between two publishers) changes nothing."""
    finals = EdgeFinals()
    finals.heard(message(("/t/1", "42", {"state": "ordered"})))
    finals.heard(pending(("/t/1", "42", {"state": "waiting"})))
    assert finals.pending_for("/t/1", "42") is None


def test_a_pending_state_is_used_only_while_fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its position is the one it had when heard: past PENDING_SECONDS a stream reads the
    resource again instead."""
    monkeypatch.setattr(edge_finals, "PENDING_SECONDS", 0.02)
    finals = EdgeFinals()
    finals.heard(pending(("/t/1", "42", {})))
    assert finals.pending_for("/t/1", "42") == b"{}"
    time.sleep(0.05)
    assert finals.pending_for("/t/1", "42") is None


def test_pending_states_are_forgotten_when_told() -> None:
    """After a subscription dropped: their finals may have been missed meanwhile."""
    finals = EdgeFinals()
    finals.heard(pending(("/t/1", "42", {}), ("/t/2", "42", {})))
    finals.forget_pending()
    assert finals.pending_for("/t/1", "42") is None
    assert finals.pending_for("/t/2", "42") is None


def test_pending_states_are_bounded_as_finals_are() -> None:
    finals = EdgeFinals(max_held=2)
    finals.heard(pending(("/t/1", "1", {}), ("/t/2", "2", {})))
    finals.heard(pending(("/t/3", "3", {})))
    assert [finals.pending_for(f"/t/{n}", str(n)) for n in (1, 2, 3)] == [None, b"{}", b"{}"]


async def test_forgetting_the_pending_states_wakes_every_stream_waiting_for_a_final() -> None:
    """A subscription that reconnected may have missed finals: the streams waiting for one are
    told (the count of reconnections moves), so they read their resource again soon."""
    finals = EdgeFinals()
    heard = finals.reconnections
    waiting = asyncio.create_task(finals.wait("/t/1", "42", timeout=30))
    await asyncio.sleep(0.01)
    finals.forget_pending()
    assert await asyncio.wait_for(waiting, 1) is None
    assert finals.reconnections == heard + 1
