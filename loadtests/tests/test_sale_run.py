"""`make load`'s whole pipeline at a tiny size: its own services on loopback, the seed, Locust
(a master and one worker), the wait for the TTL, the checker and the report files."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from shared.testing.datastores import TEST_REDIS_URL


async def test_a_tiny_sale_opening_is_checked_and_reported(tmp_path: Path) -> None:
    out = tmp_path / "run"
    # The test Redis database: the run empties it first, and loadtests run last in the suite.
    run = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadtests.sale_run", "--buyers", "12", "--stock", "3",
        "--browsers", "2", "--social", "2", "--ttl", "3", "--lead", "6", "--workers", "1",
        "--spawn-rate", "50", "--double-tap", "1", "--hello-seconds", "1",
        "--redis-url", TEST_REDIS_URL, "--schema-suffix", "smoke",
        "--out", str(out), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    printed = (await asyncio.wait_for(run.communicate(), 150))[0].decode()
    assert run.returncode == 0, printed
    assert "checker: PASS" in printed

    summary = json.loads((out / "summary.json").read_text())
    assert summary["checker"]["ok"] is True
    assert summary["checker"]["broken"] == []
    assert len(summary["checker"]["checked"]) == 9
    assert summary["buyers_done"] == 12
    assert len(summary["hello_world"]["rps"]) == 2  # before the seed, after the buyers
    buyers = summary["buyers_at_opening"]
    assert buyers["buyers"] == 12
    assert buyers["final_answer"]["max_s"] is not None  # every buyer has its final answer
    assert sum(buyers["orders_by_final"].values()) == 24
    # Every buyer held the product's live stream before the opening; the browsers too.
    assert summary["answers"]["GET /products/{id}/live"]["200"] >= 12
    orders = summary["answers"]["POST /orders"]
    # Every buyer tapped twice at the opening: 3 units won (more only if a declined card gave
    # one back while orders were still being decided), every other order refused (sold out,
    # over the limit of one, or the buyer's unpaid order of it already there).
    assert orders.get("201", 0) >= 3
    assert sum(orders.values()) == 24
    assert set(orders) <= {"201", "409 sold_out", "409 purchase_limit_exceeded",
                           "409 unpaid_order_exists"}
    assert summary["decisions_at_opening"]["decided"] == 24
    facts = summary["checker"]["facts"]
    assert facts["ledger"]["held"] == 0
    assert facts["public_remaining"] + facts["ledger"]["sold"] == 3
    assert {"gateway", "order", "stock", "crowd 0", "locust master", "locust worker 0"} <= set(
        summary["cpu_seconds"])
    for name in ("report.html", "locust_stats.csv", "chart.png", "outcomes.json"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
