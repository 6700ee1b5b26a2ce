"""The fault schedule: drawn from a seed, bounded in count and time, carried out one fault at a
time, each one recorded with when it began and when the system was whole again.

Kinds of fault:
- kill: kill -9 of one app (each service and the gateway at least once), started again by the
  run after `down_seconds`;
- kill of the run's own Redis (its append-only file keeps every acknowledged write) or MariaDB
  (InnoDB's crash recovery), started again after `down_seconds`; on request only, Redis
  started again empty (`redis-wiped`);
- processor: the card-processor simulator's faults changed for `down_seconds` through its
  `PUT /_sim/faults` (slow past the stale-payment bound, lost answers, duplicated and reordered
  webhooks), then set back.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

FaultKind = Literal["kill", "processor"]
APPS = ("gateway", "user", "product", "order", "payment", "stock", "social")
# Where the extra kills land: the apps a buyer's money and units pass through.
MONEY_PATH = ("gateway", "order", "payment", "stock")
DATASTORES = ("redis", "mariadb")
# Only when asked for (--kill redis-wiped): Redis back empty, beyond what its append-only file
# guarantees; shows what rests on Redis alone (stored Idempotency-Key answers, say).
OPTIONAL = ("redis-wiped",)
# Processor fault settings applied for a while (names as the simulator's PUT /_sim/faults takes
# them); each is one entry of the schedule. `slow_past_reaper`'s latency is set by the run to
# outlast payment_service's stale-payment bound.
PROCESSOR_FAULTS: dict[str, dict[str, Any]] = {
    "slow_past_reaper": {"latency_ms": 70_000},
    "lost_answers": {"lost_answer_rate": 0.5},
    "webhooks_duplicated_reordered": {"pending_rate": 0.5, "webhook_duplicate_rate": 0.5,
                                      "webhook_reorder_rate": 0.5},
}


@dataclass(frozen=True)
class Fault:
    at: float  # seconds from the start of the sale
    kind: FaultKind
    target: str  # an app, redis, mariadb, or a PROCESSOR_FAULTS name
    down_seconds: float

    def label(self) -> str:
        return f"{self.kind} {self.target}"


@dataclass
class FaultRecord:
    """What happened when a fault was carried out (times in seconds from the sale's start)."""

    fault: Fault
    began: float
    restored: float | None = None
    attempts: int = 0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self.fault), "began": round(self.began, 2),
                "restored": None if self.restored is None else round(self.restored, 2),
                "attempts": self.attempts, "error": self.error}


@dataclass(frozen=True)
class FaultPlan:
    seed: int
    window: tuple[float, float]
    faults: tuple[Fault, ...] = field(default=())


def plan_faults(seed: int, *, duration: float, targets: Sequence[str] = APPS + DATASTORES,
                processor_faults: Sequence[str] = (), extra_kills: int = 0,
                max_down_seconds: float = 3.0) -> FaultPlan:
    """Every target killed once and each processor fault applied once, plus `extra_kills`
    kills drawn from the money path's apps, at moments drawn uniformly from the fault window (the
    sale's duration minus a tenth at each end), spaced so that one fault's recovery never
    overlaps the next one's start by design (the runner serialises them anyway)."""
    rng = random.Random(seed)
    start, end = duration * 0.1, duration * 0.9
    chosen: list[tuple[FaultKind, str]] = [("kill", target) for target in targets]
    chosen += [("kill", rng.choice(MONEY_PATH)) for _ in range(extra_kills)]
    chosen += [("processor", name) for name in processor_faults]
    rng.shuffle(chosen)
    moments = sorted(rng.uniform(start, end) for _ in chosen)
    faults = []
    for (kind, target), at in zip(chosen, moments, strict=True):
        # Processor faults last long enough to matter (a charge slower than the bound).
        down = (rng.uniform(5.0, 10.0) if kind == "processor"
                else rng.uniform(0.2, max_down_seconds))
        faults.append(Fault(round(at, 2), kind, target, round(down, 2)))
    return FaultPlan(seed, (start, end), tuple(faults))


class FaultRunner:
    """Carries out a plan against the run's system: `kill(name)`, `start(name) -> attempts`,
    `set_processor(settings)`. Blocking calls run in a thread so the buyers keep going."""

    def __init__(self, plan: FaultPlan, *, kill: Callable[[str], None],
                 start: Callable[[str], int],
                 set_processor: Callable[[dict[str, Any]], dict[str, Any]] | None,
                 started_at: float, processor_faults: dict[str, dict[str, Any]] | None = None,
                 ) -> None:
        self.plan = plan
        self.kill = kill
        self.start = start
        self.set_processor = set_processor
        self.processor_faults = processor_faults or PROCESSOR_FAULTS
        self.started_at = started_at
        self.records: list[FaultRecord] = []

    def now(self) -> float:
        return time.monotonic() - self.started_at

    async def run(self) -> list[FaultRecord]:
        """Kills one at a time (each waits for the previous restart); the processor's faults on
        their own line beside them, since changing a setting waits for no restart."""
        await asyncio.gather(
            self._one_at_a_time([f for f in self.plan.faults if f.kind != "processor"]),
            self._one_at_a_time([f for f in self.plan.faults if f.kind == "processor"]))
        self.records.sort(key=lambda record: record.began)
        return self.records

    async def _one_at_a_time(self, faults: Sequence[Fault]) -> None:
        for fault in faults:
            await asyncio.sleep(max(0.0, fault.at - self.now()))
            record = FaultRecord(fault, began=self.now())
            self.records.append(record)
            try:
                record.attempts = await asyncio.to_thread(self._carry_out, fault)
            except Exception as error:  # the report names it; the schedule goes on
                record.error = f"{type(error).__name__}: {str(error)[:300]}"
            record.restored = self.now()

    def _carry_out(self, fault: Fault) -> int:
        if fault.kind == "processor":
            if self.set_processor is None:
                raise RuntimeError("no processor simulator in this system")
            applied = self.processor_faults[fault.target]
            # The settings in force before, to go back to (an empty PUT changes nothing).
            calm = self.set_processor({})
            self.set_processor(applied)
            time.sleep(fault.down_seconds)
            self.set_processor({key: calm[key] for key in applied})
            return 1
        self.kill(fault.target)
        time.sleep(fault.down_seconds)
        return self.start(fault.target)
