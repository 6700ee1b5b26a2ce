"""The checker's buyers' invariants (every_buyer_answered, ticket_answered_once, fair_line) and the
fairness figures, over buyers' records as loadtests/crowd.py writes them: direct answers and
202s followed to their ticket's final answer, one breach kind at a time. The services' rows play
no part in these invariants: the state beside them is an empty, consistent sale."""

from __future__ import annotations

import math
from typing import Any

import pytest

from loadtests.checker import Ledger, SaleState, check
from loadtests.fairness import fairness_of, ranks, spearman, stamp_order

OPENS = 1_000_000.0
BUYERS = ("every_buyer_answered", "ticket_answered_once", "fair_line")


def tap(sent: float, *, state: str | None, at: float | None = None, status: int = 202,
        code: str = "", ticket: str | None = None, order_id: int | None = None,
        finals: list[str] | None = None) -> dict[str, Any]:
    """One POST /orders: `sent` and `at` in seconds from the opening."""
    final_code = code if state == "refused" else ""
    seen = finals if finals is not None else (
        [] if state is None else [f"ordered {order_id}" if state == "ordered"
                                  else f"refused {final_code}"])
    return {"sent": OPENS + sent, "status": status, "code": "" if status == 202 else code,
            "answered": OPENS + sent + 0.01, "ticket": ticket, "position": None,
            "state": state, "final_code": final_code, "order_id": order_id,
            "final_status": 0 if state is None else 201 if state == "ordered" else 409,
            "final_at": None if at is None else OPENS + at, "finals": seen}


def buyer(index: int, *taps: dict[str, Any], error: str = "") -> dict[str, Any]:
    return {"index": index, "user_id": 1000 + index, "live_status": 200, "clock_offset": 0.0,
            "taps": list(taps), "error": error}


def fair_line(winners: int = 25, losers: int = 50) -> list[dict[str, Any]]:
    """`winners` buyers granted in their arrival order through tickets, then `losers` refused
    sold_out at the same instant, one directly with a 409."""
    crowd = [buyer(n, tap(n * 0.001, state="ordered", at=0.2 + n * 0.01, ticket=f"t{n}",
                          order_id=500 + n)) for n in range(winners)]
    crowd += [buyer(n, tap(n * 0.001, state="refused", at=0.6, code="sold_out", ticket=f"t{n}"))
              for n in range(winners, winners + losers - 1)]
    n = winners + losers - 1
    crowd.append(buyer(n, tap(n * 0.001, state="refused", at=0.7, status=409, code="sold_out")))
    return crowd


def broken(buyers: list[dict[str, Any]], decided_again: frozenset[str] = frozenset()) -> list[str]:
    state = SaleState(7, Ledger(total=5, held=0, sold=0, limit_per_user=1), [], [], [], {}, 5,
                      decided_again)
    verdict = check(state, answers={201: 1}, buyers=buyers)
    assert set(BUYERS) <= set(verdict.checked)
    return sorted(verdict.breaches)


def test_a_fair_line_whose_buyers_all_got_final_answers_passes() -> None:
    assert broken(fair_line()) == []


def test_a_double_tap_that_got_the_same_ticket_twice_is_one_answer() -> None:
    crowd = fair_line()
    crowd[0]["taps"].append(dict(crowd[0]["taps"][0], sent=OPENS + 0.0005))
    assert broken(crowd) == []


def test_a_ticket_that_never_turned_final_is_a_buyer_without_an_answer() -> None:
    crowd = fair_line()
    crowd[40]["taps"] = [tap(0.04, state=None, ticket="t40")]
    assert broken(crowd) == ["every_buyer_answered"]


def test_a_5xx_is_no_final_answer() -> None:
    crowd = fair_line()
    crowd[41]["taps"] = [tap(0.041, state=None, status=503, code="upstream_unavailable")]
    assert broken(crowd) == ["every_buyer_answered"]


def test_a_buyer_who_never_sent_its_order_has_no_answer() -> None:
    crowd = fair_line()
    crowd.append(buyer(99, error="GET /products/{id}/live: ConnectionResetError"))
    assert broken(crowd) == ["every_buyer_answered"]


def test_a_ticket_refused_with_a_503_problem_counts_against_the_run() -> None:
    crowd = fair_line()
    crowd[42]["taps"][0].update(final_code="upstream_unavailable", final_status=503)
    assert broken(crowd) == ["no_5xx"]


def test_a_ticket_answered_ordered_then_sold_out_is_answered_twice() -> None:
    crowd = fair_line()
    crowd[3]["taps"][0]["finals"] = ["ordered 503", "refused sold_out"]
    assert broken(crowd) == ["ticket_answered_once"]


def test_one_ticket_handed_to_two_buyers_is_a_breach() -> None:
    crowd = fair_line()
    crowd[30]["taps"][0]["ticket"] = "t31"
    assert broken(crowd) == ["ticket_answered_once"]


def test_winners_served_out_of_their_arrival_order_break_the_fair_line() -> None:
    crowd = fair_line()
    for n, b in enumerate(crowd[:25]):
        b["taps"][0]["final_at"] = OPENS + 0.5 - n * 0.01  # the last to come, the first served
    assert broken(crowd) == ["fair_line"]


def test_winners_who_were_not_the_earliest_arrivals_break_the_fair_line() -> None:
    crowd = fair_line()
    # The first 25 arrivals swap places with 25 later ones: the same times, other winners.
    for early, late in zip(crowd[:25], crowd[25:50], strict=True):
        early["taps"][0]["sent"], late["taps"][0]["sent"] = (late["taps"][0]["sent"],
                                                             early["taps"][0]["sent"])
    fair = fairness_of(crowd)
    assert fair.earliest_share == 0.0
    assert broken(crowd) == ["fair_line"]


def test_too_few_winners_are_reported_not_judged() -> None:
    crowd = fair_line(winners=3, losers=10)
    for n, b in enumerate(crowd[:3]):
        b["taps"][0]["final_at"] = OPENS + 0.5 - n * 0.01
    state = SaleState(7, Ledger(total=5, held=0, sold=0, limit_per_user=1), [], [], [], {}, 5)
    verdict = check(state, buyers=crowd)
    assert verdict.ok
    assert verdict.facts["fairness"]["judged"] is False
    assert verdict.facts["fairness"]["spearman"] == -1.0


def test_ranks_average_their_ties() -> None:
    assert ranks([10.0, 30.0, 20.0, 20.0]) == [1.0, 4.0, 2.5, 2.5]


def test_spearman_of_the_same_order_reversed_and_no_spread() -> None:
    xs = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert spearman(xs, [10.0, 20.0, 30.0, 40.0, 50.0]) == pytest.approx(1.0)
    assert spearman(xs, [5.0, 4.0, 3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    assert spearman(xs, [1.0, 2.0, 3.0, 5.0, 4.0]) == pytest.approx(0.9)
    assert math.isnan(spearman(xs, [7.0] * 5))


def test_fairness_takes_a_buyers_first_send_and_first_grant() -> None:
    crowd = fair_line()
    fair = fairness_of(crowd)
    assert (fair.buyers, fair.granted) == (75, 25)
    assert fair.spearman == pytest.approx(1.0)
    assert fair.earliest_share == 1.0


def test_a_winner_whose_request_a_fault_cut_is_judged_by_earliest_arrivals_only() -> None:
    """Its place was kept, so it won in its turn; its answer came once the fault was noticed
    (the place's lease): late, which says nothing of the line's order."""
    crowd = fair_line()
    for b in crowd[:5]:
        b["taps"][0]["final_at"] = OPENS + 16.0  # re-decided after a killed replica's lease
        b["taps"][0]["retried"] = 2
    fair = fairness_of(crowd)
    assert fair.cut_by_faults == 5
    assert fair.spearman == pytest.approx(1.0)
    assert fair.earliest_share == 1.0
    assert broken(crowd) == []


def test_a_winner_whose_place_was_decided_again_is_judged_by_earliest_arrivals_only() -> None:
    """Its deciding replica died after its place was admitted: the buyer saw nothing but a late
    answer, given once the place's lease ran out and another replica decided it again. The
    line's records (read by the checker) say so; the buyer's records cannot."""
    crowd = fair_line()
    for b in crowd[:5]:
        b["taps"][0]["final_at"] = OPENS + 8.0
    again = frozenset(f"t{n}" for n in range(5))
    fair = fairness_of(crowd, again)
    assert (fair.cut_by_faults, fair.decided_again) == (0, 5)
    assert fair.spearman == pytest.approx(1.0)
    assert fair.earliest_share == 1.0
    assert broken(crowd, again) == []
    # A place decided again that lost (refused) is no winner: nothing to leave out.
    assert fairness_of(crowd, frozenset({"t30"})).decided_again == 0


def test_a_late_answer_without_a_fault_still_breaks_the_order() -> None:
    crowd = fair_line()
    for b in crowd[:5]:
        b["taps"][0]["final_at"] = OPENS + 16.0
    fair = fairness_of(crowd)
    assert fair.cut_by_faults == 0
    assert fair.spearman < 0.9
    assert broken(crowd) == ["fair_line"]


def test_the_stamps_are_set_against_the_sends_ticket_by_ticket() -> None:
    """A block of sends the gateway read in reverse (as Docker's userland proxy relayed them):
    the figure says so, where the line's two fairness figures only say the order was off."""
    crowd = fair_line(winners=10, losers=10)  # tickets t0..t18 sent 1 ms apart, then a 409
    in_order = {f"t{n}": 1_000_000 + n * 1000 for n in range(19)}
    assert stamp_order(crowd, in_order) == {
        "tickets": 19, "spearman": 1.0, "stamped_before_the_send_ahead": 0}
    reversed_block = dict(in_order) | {f"t{n}": 1_000_000 + (9 - n) * 1000 for n in range(10)}
    figure = stamp_order(crowd, reversed_block)
    assert figure["tickets"] == 19
    assert figure["stamped_before_the_send_ahead"] == 9
    assert figure["spearman"] < 0.8
    # A buyer's second tap shares its first's ticket: the first send is the one that counts.
    crowd[0]["taps"].append(tap(0.5, state="ordered", at=0.3, ticket="t0"))
    assert stamp_order(crowd, in_order)["stamped_before_the_send_ahead"] == 0
    # Tickets the records do not hold (a straight-on order has none) are left out.
    assert stamp_order(crowd, {"t1": 5, "t2": 6})["tickets"] == 2
