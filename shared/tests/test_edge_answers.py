"""EdgeAnswers (shared/edge_answers.py): a message it cannot read changes nothing."""

from __future__ import annotations

from shared.edge_answers import EdgeAnswers


def test_a_message_not_understood_is_logged_and_ignored() -> None:
    """Its log line once named a field `message`, which logging keeps for itself: heard()
    raised KeyError inside the gateway's subscription instead of ignoring the message."""
    answers = EdgeAnswers()
    for raw in ("not json", "{}", '{"route": "POST /x", "key": "1", "answer": {}}'):
        answers.heard(raw)
    assert answers.routes() == frozenset()
