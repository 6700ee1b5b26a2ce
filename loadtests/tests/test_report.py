"""The figures make load reports, from a run's answers; and how Locust workers share the seed's
accounts."""

from __future__ import annotations

from pathlib import Path

from loadtests.report import (
    Answer,
    answer_counts,
    buyers_at_opening,
    decisions_at_opening,
    draw_chart,
    errors_by_code,
    final_answers,
    order_and_payment_rate,
    percentile,
)
from loadtests.seed_file import account_of_worker

OPENS = 1_000_000.0


def order(status: int, code: str, sent: float, latency_ms: float) -> Answer:
    return Answer("POST /orders", status, code, OPENS + sent, latency_ms)


def test_decisions_count_201s_and_409s_over_the_time_to_the_last_decision() -> None:
    answers = [order(201, "", 0.0, 500), order(409, "sold_out", 0.1, 1900),
               order(409, "purchase_limit_exceeded", 0.2, 800), order(503, "upstream", 0.0, 3000),
               order(409, "sold_out", 1.5, 100)]
    decisions = decisions_at_opening(answers, OPENS)
    # 4 decided; the last decision answered at 1.5 + 0.1 = 2.0 s after the opening; the 503
    # is no decision, but it was one of the orders sent.
    assert decisions == {"orders": 5, "sent_in_first_second": 4, "decided": 4, "seconds": 2.0,
                         "per_second": 2.0}


def test_percentiles_are_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (
        50.0, 95.0, 99.0)
    assert percentile([7.0], 99) == 7.0


def test_answers_and_errors_by_code_cover_counted_and_recorded_answers() -> None:
    outcomes = {"counts": [["GET /feed", 200, "", 10], ["GET /feed", 504, "upstream_timeout", 1]],
                "records": [["POST /orders", 201, "", OPENS, 5.0],
                            ["POST /orders", 409, "sold_out", OPENS, 5.0],
                            ["POST /payments", 201, "failed", OPENS, 5.0]]}
    counts = answer_counts(outcomes)
    assert counts == {"GET /feed": {"200": 10, "504 upstream_timeout": 1},
                      "POST /orders": {"201": 1, "409 sold_out": 1},
                      "POST /payments": {"201 failed": 1}}
    assert errors_by_code(counts) == {"409 sold_out": 1, "504 upstream_timeout": 1}


def test_the_chart_is_a_png(tmp_path: Path) -> None:
    outcomes = {"records": [["POST /orders", 201, "", OPENS + 0.1, 40.0],
                            ["POST /orders", 409, "sold_out", OPENS + 0.2, 30.0],
                            ["POST /payments", 201, "succeeded", OPENS + 2.0, 60.0]]}
    draw_chart(outcomes, OPENS, tmp_path / "chart.png", "a tiny sale")
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_workers_hand_out_disjoint_accounts() -> None:
    pool = [{"user_id": n} for n in range(10)]
    handed = [[account_of_worker(pool, worker=w, workers=3, taken=t)["user_id"]
               for t in range(len(pool[w::3]))] for w in range(3)]
    assert handed == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    # A worker given more users than its share goes round its own accounts again.
    assert account_of_worker(pool, worker=1, workers=3, taken=3)["user_id"] == 1


def test_order_and_payment_rate_runs_from_the_first_sent_to_the_last_answer() -> None:
    answers = [order(201, "", 0.0, 100), order(409, "sold_out", 0.5, 300),
               Answer("POST /payments", 201, "succeeded", OPENS + 1.0, 1000)]
    assert order_and_payment_rate(answers) == {"requests": 3, "seconds": 2.0, "per_second": 1.5,
                                               "mean_ms": 466.7}


def crowd_tap(sent: float, first: float, final: float | None, state: str | None,
              code: str = "", status: int = 202) -> dict[str, object]:
    return {"sent": OPENS + sent, "status": status, "code": "",
            "answered": OPENS + first, "ticket": "t" if status == 202 else None,
            "state": state, "final_code": code,
            "final_at": None if final is None else OPENS + final}


def test_buyers_at_the_opening_are_timed_from_the_opening_to_their_last_final_answer() -> None:
    buyers = [{"taps": [crowd_tap(0.0, 0.1, 0.5, "ordered")]},
              {"taps": [crowd_tap(0.0, 0.2, 0.8, "refused", "sold_out"),
                        crowd_tap(0.0, 0.3, 1.5, "refused", "purchase_limit_exceeded")]},
              {"taps": [crowd_tap(0.1, 2.5, None, None)]},  # a ticket never final
              {"taps": [crowd_tap(0.1, 0.4, 0.4, "refused", "sold_out", status=409)]}]
    figures = buyers_at_opening(buyers, OPENS)
    assert figures["tickets"] == 4
    assert figures["orders_by_final"] == {"no final answer": 1, "ordered": 1,
                                          "refused purchase_limit_exceeded": 1,
                                          "refused sold_out": 2}
    # Final answers 0.5, 1.5 (the buyer's later one), 0.4 and never: nearest rank.
    assert figures["final_answer"]["p50_s"] == 0.5
    assert figures["final_answer"]["p99_s"] is None  # a buyer never answered is the worst
    assert figures["final_answer"]["share_within_1_s"] == 0.5
    assert figures["final_answer"]["share_within_10_s"] == 0.75
    assert figures["first_answer"]["max_s"] == 2.5
    assert figures["first_answer"]["share_within_2_s"] == 0.75


def test_the_opening_is_split_into_the_sends_the_first_order_and_the_first_sold_out() -> None:
    buyers = [{"taps": [crowd_tap(0.02, 0.1, 0.45, "ordered", status=201)]},
              {"taps": [crowd_tap(0.0, 0.1, 0.6, "ordered")]},
              {"taps": [crowd_tap(0.15, 0.2, 1.1, "refused", "sold_out", status=409)]},
              # refused before the stock ran out: not the sell-out
              {"taps": [crowd_tap(0.01, 0.3, 0.3, "refused", "purchase_limit_exceeded")]},
              {"taps": [crowd_tap(0.05, 0.2, 1.0, "refused", "sold_out"),
                        crowd_tap(0.07, 0.4, None, None)]}]  # never final
    assert buyers_at_opening(buyers, OPENS)["phases"] == {
        "last_sent_s": 0.15, "first_order_s": 0.45, "first_sold_out_s": 1.0}
    assert buyers_at_opening([{"taps": [crowd_tap(0.0, 0.1, None, None)]}], OPENS)["phases"] == {
        "last_sent_s": 0.0, "first_order_s": None, "first_sold_out_s": None}
    assert buyers_at_opening([], OPENS)["phases"] == {
        "last_sent_s": None, "first_order_s": None, "first_sold_out_s": None}


def test_buyers_who_waited_are_told_by_how_often_their_position_moved() -> None:
    def waited(seconds: float, moves: int, unmoved: float) -> dict[str, object]:
        return crowd_tap(0.0, 0.1, 0.1 + seconds, "refused", "sold_out") | {
            "moves": moves, "longest_unmoved": unmoved}

    buyers = [{"taps": [waited(5.0, 3, 1.0)]}, {"taps": [waited(4.0, 0, 4.0)]},
              {"taps": [waited(1.0, 0, 1.0)]},  # answered too soon to hear a move
              {"taps": [crowd_tap(0.0, 0.1, 0.2, "ordered", status=201)]}]
    waiting = buyers_at_opening(buyers, OPENS)["waiting"]
    assert waiting["waited_2_s_or_more"] == 2
    assert waiting["heard_a_move"] == 0.5
    assert waiting["longest_unmoved"] == {"p50_s": 1.0, "p95_s": 4.0}


def test_final_answers_stand_for_the_tickets_in_the_decisions() -> None:
    outcomes = {"records": [["POST /orders", 202, "", OPENS, 10.0]],
                "buyers": [{"taps": [crowd_tap(0.0, 0.01, 0.9, "refused", "sold_out")]}]}
    decided = final_answers(outcomes)
    assert [(a.status, a.code, round(a.latency_ms)) for a in decided] == [(409, "sold_out", 900)]
    assert decisions_at_opening(decided, OPENS)["decided"] == 1
