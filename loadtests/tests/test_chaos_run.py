"""`make chaos` at a small size, seeded: its own Redis and MariaDB, the money path's apps (the
gateway, order, payment and stock services) and both datastores killed with SIGKILL and
restarted during a short sale with payments, then the checker's verdict and the report
files."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from loadtests.chaos.checker import INVARIANTS
from loadtests.chaos.faults import PROCESSOR_FAULTS
from loadtests.chaos.system import has_processor_simulator

# The whole run is bounded by its own bounds; this one only keeps a hang from holding CI.
RUN_SECONDS = 300
# What money and units pass through (user, product and social are killed by `make chaos`).
MONEY_PATH_AND_DATASTORES = ("gateway", "order", "payment", "stock", "redis", "mariadb")


@pytest.mark.chaos
async def test_a_short_seeded_chaos_run_keeps_every_invariant(tmp_path: Path) -> None:
    out = tmp_path / "chaos"
    run = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadtests.chaos", "--seed", "1", "--duration", "20",
        "--buyers", "24", "--stock", "6", "--kill", *MONEY_PATH_AND_DATASTORES,
        "--extra-kills", "0", "--max-down", "1", "--retry-for", "30",
        "--out", str(out), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    printed = (await asyncio.wait_for(run.communicate(), RUN_SECONDS))[0].decode()
    # With the card-processor simulator, its three faults are scheduled too.
    processor = sorted(PROCESSOR_FAULTS) if has_processor_simulator() else []
    assert f"bounds: sale 20 s; {6 + len(processor)} faults" in printed
    assert run.returncode == 0, printed
    assert f"chaos checker: PASS ({len(INVARIANTS)} invariants checked, 0 broken)" in printed, \
        printed

    report = json.loads((out / "report.json").read_text())
    assert report["verdict"]["ok"] is True
    assert report["settled"] is True
    # Each went down once and came back.
    faults = report["faults"]
    assert sorted(f["target"] for f in faults) == sorted(
        [*MONEY_PATH_AND_DATASTORES, *processor])
    assert all(f["error"] is None and f["restored"] is not None for f in faults)
    facts = report["verdict"]["facts"]
    assert facts["charges_source"] == ("processor" if processor else "payments")
    assert facts["ledger"]["held"] == 0
    assert facts["public_remaining"] + facts["ledger"]["sold"] == 6
    # The buyers did retry: answers were dropped or lost and asked for again with their keys.
    assert facts["keys_retried"] > 0
    markdown = (out / "report.md").read_text()
    assert markdown.startswith("# Chaos run, seed 1: PASS")
    assert "FAULT kill mariadb" in markdown
    assert (out / "attempts.json").stat().st_size > 0
