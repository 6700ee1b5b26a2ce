"""EdgeFinals (shared/edge_finals.py): what a gateway holds of the final states it heard."""

from __future__ import annotations

import json
import time

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
