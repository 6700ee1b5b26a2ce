"""EdgeAnswers (shared/edge_answers.py): a message it cannot read changes nothing; it tells
its owner of an answer new in force, not of each renewal."""

from __future__ import annotations

import time

from shared.edge_answers import Answer, EdgeAnswers, RequestShape, answer_message

ROUTE = "POST /api/v1/orders"
SHAPE = RequestShape(key_field="product_id", int_fields={"product_id": (1, 2**53 - 1)},
                     unless_headers=frozenset())
SOLD_OUT = Answer(409, "sold_out", "Sold out", "Sold out")


def test_a_message_not_understood_is_logged_and_ignored() -> None:
    """Its log line once named a field `message`, which logging keeps for itself: heard()
    raised KeyError inside the gateway's subscription instead of ignoring the message."""
    answers = EdgeAnswers()
    for raw in ("not json", "{}", '{"route": "POST /x", "key": "1", "answer": {}}'):
        answers.heard(raw)
    assert answers.routes() == frozenset()


def test_the_owner_hears_of_an_answer_new_in_force_not_of_its_renewals() -> None:
    told: list[float] = []
    answers = EdgeAnswers(on_answer=lambda: told.append(time.monotonic()))
    answers.heard(answer_message(ROUTE, "7", SOLD_OUT, SHAPE, ttl_ms=60_000))
    answers.heard(answer_message(ROUTE, "7", SOLD_OUT, SHAPE, ttl_ms=60_000))  # renewed
    assert len(told) == 1
    answers.heard(answer_message(ROUTE, "8", SOLD_OUT, SHAPE, ttl_ms=60_000))  # another key
    assert len(told) == 2
    answers.heard(answer_message(ROUTE, "7", None))  # withdrawn: nothing to tell
    assert len(told) == 2
    answers.heard(answer_message(ROUTE, "7", SOLD_OUT, SHAPE, ttl_ms=60_000))  # in force again
    assert len(told) == 3
    answers.heard(answer_message(ROUTE, "9", SOLD_OUT, SHAPE, ttl_ms=1))
    time.sleep(0.01)
    answers.heard(answer_message(ROUTE, "9", SOLD_OUT, SHAPE, ttl_ms=60_000))  # after it lapsed
    assert len(told) == 5
