"""EdgeFinals (shared/edge_finals.py): what a gateway holds of the final states it heard."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from shared import edge_finals
from shared.edge_finals import EdgeFinals, Place, QueuePosition


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


def placed(path: str, position: int, queue: str, base: int) -> str:
    """JOIN's pending message: a place in `queue` taken when it had moved `base` on."""
    body = {"ticket": "t", "position": position, "state": "waiting"}
    return json.dumps({"ttl_ms": 60_000, "finals": [], "pending": [[path, "42", body, [queue, base]]]})


def moved(queue: str, count: int) -> str:
    return json.dumps({"ttl_ms": 0, "finals": [], "moved": [[queue, count]]})


def following(finals: EdgeFinals, position: int, base: int) -> QueuePosition:
    """A stream of /t/1 held on its pending place, `position` in line:1 at `base`."""
    finals.heard(placed("/t/1", position, "line:1", base))
    followed = QueuePosition.of(finals.place_for("/t/1", "42"),
                                json.dumps({"position": position}).encode())
    assert followed is not None
    return followed


def position_of(body: bytes | None) -> object:
    assert body is not None
    return json.loads(body)["position"]


def test_a_pending_place_follows_its_queue_from_counts_heard_after_it() -> None:
    """Counts heard before the place was taken are already in its position (or are an older
    queue's, begun again): only those heard after it move it."""
    finals = EdgeFinals()
    finals.heard(moved("line:1", 900))  # before: never applied
    finals.heard(placed("/t/1", 40, "line:1", 1000))
    place = finals.place_for("/t/1", "42")
    assert place is not None
    assert (place.queue, place.base) == ("line:1", 1000)
    assert finals.place_for("/t/1", "43") is None  # someone else's
    position = QueuePosition.of(place, b'{"ticket":"t","position":40,"state":"waiting"}')
    assert position is not None
    assert position.moved(finals) is None
    finals.heard(moved("line:2", 2000))  # another product's line
    assert position.moved(finals) is None
    finals.heard(moved("line:1", 1015))
    assert position_of(position.moved(finals)) == 25
    assert position.moved(finals) is None  # sent once
    finals.heard(moved("line:1", 1100))
    assert position_of(position.moved(finals)) == 1  # at the front, never past it


def test_a_count_heard_before_the_place_is_not_applied_even_above_its_base() -> None:
    """A queue begun again: the gateway still holds the old queue's count, far above the new
    place's base. Only a count heard after the place counts, and one below its base ends the
    following."""
    finals = EdgeFinals()
    finals.heard(moved("line:1", 5000))  # the old queue's
    finals.heard(placed("/t/1", 10, "line:1", 0))
    place = finals.place_for("/t/1", "42")
    assert place is not None
    position = QueuePosition.of(place, b'{"position":10}')
    assert position is not None
    assert position.moved(finals) is None
    assert not position.ended(finals)
    finals.heard(moved("line:1", 3))
    assert position_of(position.moved(finals)) == 7


def test_following_ends_at_the_front_or_when_the_queue_begins_again() -> None:
    finals = EdgeFinals()
    position = following(finals, 3, 100)
    finals.heard(moved("line:1", 101))
    assert position_of(position.moved(finals)) == 2
    assert not position.ended(finals)
    finals.heard(moved("line:1", 7))  # begun again: its counts are another queue's
    assert position.moved(finals) is None
    assert position.ended(finals)
    again = QueuePosition.of(finals.place_for("/t/1", "42"), b'{"position":3}')
    assert again is not None
    finals.heard(moved("line:1", 150))
    assert position_of(again.moved(finals)) == 1
    assert again.ended(finals)  # at the front: nothing more to follow


def test_a_place_follows_only_towards_the_front() -> None:
    """A count lower than the place's base (its queue begun again) is not applied, and a
    position already shown is not sent again."""
    finals = EdgeFinals()
    position = following(finals, 10, 50)
    finals.heard(moved("line:1", 3))
    assert position.moved(finals) is None
    finals.heard(moved("line:1", 54))
    assert position_of(position.moved(finals)) == 6
    finals.heard(moved("line:1", 54))
    assert position.moved(finals) is None


def test_a_position_read_again_is_followed_from_there() -> None:
    """The service's own reading (a place put back in front of it, say) is exact: the place is
    counted from it and the count heard by then."""
    finals = EdgeFinals()
    position = following(finals, 10, 0)
    finals.heard(moved("line:1", 4))
    assert position_of(position.moved(finals)) == 6
    position.read_again(b'{"position":8}', finals)  # two places went back in front of it
    assert position.moved(finals) is None
    finals.heard(moved("line:1", 7))
    assert position_of(position.moved(finals)) == 5


def test_without_a_place_or_a_position_nothing_is_followed() -> None:
    finals = EdgeFinals()
    finals.heard(pending(("/t/1", "42", {"position": 3})))  # no queue named
    assert finals.place_for("/t/1", "42") is None
    assert QueuePosition.of(None, b'{"position":3}') is None
    finals.heard(placed("/t/2", 3, "line:1", 0))
    place = finals.place_for("/t/2", "42")
    for body in (b'{"state":"waiting"}', b'{"position":"3"}', b"[]", b"not json"):
        assert QueuePosition.of(place, body) is None


def test_a_message_with_a_place_or_count_not_understood_changes_nothing() -> None:
    finals = EdgeFinals()
    for raw in (json.dumps({"ttl_ms": 1, "finals": [], "moved": [["line:1"]]}),
                json.dumps({"ttl_ms": 1, "finals": [], "moved": [["line:1", "x"]]}),
                json.dumps({"ttl_ms": 1, "finals": [],
                            "pending": [["/t/1", "42", {}, ["line:1", 0], "more"]]}),
                json.dumps({"ttl_ms": 1, "finals": [], "pending": [["/t/1", "42", {}, 5]]})):
        finals.heard(raw)
    assert finals.pending_for("/t/1", "42") is None
    assert finals.moved_since(Place("line:1", 0, 0.0)) is None


async def test_a_stream_waiting_on_its_queue_is_woken_when_the_queue_moves() -> None:
    finals = EdgeFinals()
    waiting = asyncio.create_task(finals.wait("/t/1", "42", timeout=30, queue="line:1"))
    other = asyncio.create_task(finals.wait("/t/2", "42", timeout=30))
    await asyncio.sleep(0.01)
    finals.heard(moved("line:1", 5))
    assert await asyncio.wait_for(waiting, 1) is None
    assert not other.done()  # not following a queue: only its final wakes it
    other.cancel()
