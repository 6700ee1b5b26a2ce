"""The chaos run's schedules: the same seed gives the same faults and the same crowd, every
target is hit, and everything falls inside its bounds; the report places faults, samples and
breaches on one timeline."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from loadtests.chaos.buyers import CrowdShape, plan_buyers
from loadtests.chaos.checker import Breach, ChaosVerdict
from loadtests.chaos.faults import (
    APPS,
    DATASTORES,
    Fault,
    FaultPlan,
    FaultRecord,
    FaultRunner,
    plan_faults,
)
from loadtests.chaos.report import Sample, faults_before, log_lines_naming, timeline


def test_a_seed_gives_one_fault_schedule_within_its_window() -> None:
    plan = plan_faults(7, duration=100, extra_kills=2, max_down_seconds=2.0)
    assert plan == plan_faults(7, duration=100, extra_kills=2, max_down_seconds=2.0)
    assert plan != plan_faults(8, duration=100, extra_kills=2, max_down_seconds=2.0)
    assert {f.target for f in plan.faults} == set(APPS + DATASTORES)
    assert len(plan.faults) == len(APPS + DATASTORES) + 2
    assert [f.at for f in plan.faults] == sorted(f.at for f in plan.faults)
    assert all(10 <= f.at <= 90 and 0.2 <= f.down_seconds <= 2.0 for f in plan.faults)


def test_processor_faults_are_scheduled_when_asked() -> None:
    plan = plan_faults(1, duration=60, targets=("order",),
                       processor_faults=("slow_past_reaper", "lost_answers"))
    assert sorted(f.label() for f in plan.faults) == [
        "kill order", "processor lost_answers", "processor slow_past_reaper"]


def test_a_seed_gives_one_crowd() -> None:
    accounts = [{"user_id": n, "access_token": f"t{n}"} for n in range(1, 201)]
    shape = CrowdShape(walk_away=0.2, cancel_unpaid=0.1, declined=0.1, refund=0.3,
                       dropped_answers=0.25)
    crowd = plan_buyers(3, accounts, arrive_within=50, shape=shape)
    assert crowd == plan_buyers(3, accounts, arrive_within=50, shape=shape)
    assert all(0 <= b.arrives_at <= 50 for b in crowd)
    thens = {b.then for b in crowd}
    assert thens == {"pay", "walk_away", "cancel_unpaid"}
    assert 20 < sum(b.drop_first_order_answer for b in crowd) < 80


def test_the_timeline_merges_faults_samples_and_breaches(tmp_path: Path) -> None:
    kill = FaultRecord(Fault(5.0, "kill", "order", 1.0), began=5.1, restored=8.0, attempts=1)
    down = FaultRecord(Fault(9.0, "kill", "mariadb", 2.0), began=9.0, restored=12.0,
                       error="DatastoreError: no")
    verdict = ChaosVerdict()
    verdict.breach("no_double_charge", Breach("order 4 has 2 charges kept", 4, 10.5))
    samples = [Sample(0.0, [], {}, None), Sample(6.0, ["no_oversell"], {"paid": 2}, None),
               Sample(11.0, None, {}, "unreadable: OperationalError")]
    events = [what for _, what in timeline([kill, down], samples, verdict)]
    assert events == [
        "sample: always-invariants ok",
        "FAULT kill order (down 1.0 s; back at 8.0 s)",
        "sample: BROKEN no_oversell (orders: paid 2)",
        "FAULT kill mariadb (down 2.0 s; error: DatastoreError: no)",
        "BREACH no_double_charge: order 4 has 2 charges kept",
        "sample: unreadable: OperationalError",
    ]
    assert faults_before([kill, down], 10.5) == ["kill order at 5.1 s", "kill mariadb at 9.0 s"]
    (tmp_path / "order.log").write_text('{"msg": "x", "order_id": 14}\n{"order_id": 4}\n')
    assert log_lines_naming(tmp_path, 4) == ['order: {"order_id": 4}']


async def test_kills_wait_for_each_other_and_processor_faults_run_beside_them() -> None:
    plan = FaultPlan(0, (0.0, 1.0), (
        Fault(0.0, "kill", "order", 0.2), Fault(0.05, "kill", "stock", 0.0),
        Fault(0.05, "processor", "lost_answers", 0.1)))
    calls: list[str] = []
    settings: dict[str, Any] = {"lost_answer_rate": 0.0, "latency_ms": 20}

    def set_processor(update: dict[str, Any]) -> dict[str, Any]:
        calls.append(f"processor {update}")
        settings.update(update)
        return dict(settings)

    def start(name: str) -> int:
        calls.append(f"start {name}")
        return 1

    runner = FaultRunner(plan, kill=lambda name: calls.append(f"kill {name}"), start=start,
                         set_processor=set_processor, started_at=time.monotonic())
    records = await runner.run()
    assert [r.fault.target for r in records] == ["order", "lost_answers", "stock"]
    assert all(r.error is None and r.restored is not None for r in records)
    # The stock kill waited for order's restart; the processor fault did not.
    assert calls.index("kill stock") > calls.index("start order")
    assert calls.index("processor {'lost_answer_rate': 0.5}") < calls.index("start order")
    assert settings == {"lost_answer_rate": 0.0, "latency_ms": 20}
