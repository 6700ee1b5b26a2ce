"""The drain gives its places' answers in the order it admitted them (AnswersInTurn): a later
decision that ends first waits, at most a while, for the earlier ones."""

from __future__ import annotations

import asyncio

from order_service.orders.drain import AnswersInTurn


def in_turn(overtake_after: float = 5.0) -> tuple[AnswersInTurn[str], list[str]]:
    given: list[str] = []
    return AnswersInTurn(given.append, overtake_after=overtake_after), given


async def test_answers_are_given_in_the_order_their_places_were_admitted() -> None:
    answers, given = in_turn()
    numbers = [answers.number() for _ in range(5)]
    for number in (3, 1, 4):
        answers.answered(numbers[number], f"place {number}")
    assert given == []
    assert answers.waiting == 3
    answers.answered(numbers[0], "place 0")
    assert given == ["place 0", "place 1"]
    answers.answered(numbers[2], "place 2")
    assert given == [f"place {n}" for n in range(5)]
    assert answers.waiting == 0


async def test_a_place_without_an_answer_holds_nobody_up() -> None:
    # Sent back to the line (it is admitted again later, under a new number), or given up.
    answers, given = in_turn()
    first, second, third = (answers.number() for _ in range(3))
    answers.answered(third, "third")
    answers.answered(second, None)
    assert given == []
    answers.answered(first, None)
    assert given == ["third"]


async def test_an_answer_goes_ahead_of_a_decision_that_takes_too_long() -> None:
    answers, given = in_turn(overtake_after=0.05)
    slow, quick, after = (answers.number() for _ in range(3))
    answers.answered(quick, "quick")
    await asyncio.sleep(0.02)
    answers.answered(after, "after")
    assert given == []
    await asyncio.sleep(0.06)  # the first one waiting has waited its while
    assert given == ["quick", "after"]
    answers.answered(slow, "slow")  # given as soon as it comes
    assert given == ["quick", "after", "slow"]
    assert answers.waiting == 0


async def test_a_stopping_process_gives_every_decided_answer() -> None:
    answers, given = in_turn()
    first, second, third = (answers.number() for _ in range(3))
    answers.answered(third, "third")
    answers.answered(second, "second")
    answers.give_all()
    assert given == ["second", "third"]
    answers.answered(first, "first")  # a decision that ended after all: given still
    assert given == ["second", "third", "first"]
