"""The figures make load reports, from a run's answers; and how Locust workers share the seed's
accounts."""

from __future__ import annotations

from pathlib import Path

from loadtests.report import (
    Answer,
    answer_counts,
    decisions_at_opening,
    draw_chart,
    errors_by_code,
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
