"""`make chaos`: a sale with payments on the run's own loopback system while a seeded fault
schedule does its worst, then the chaos checker's verdict and a report under
.data/chaos/<UTC timestamp>/ (report.md, report.json, attempts.json, the logs).

1. Its own Redis (append-only) and MariaDB (a fresh data directory) on private ports under the
   run's directory, the schemas migrated, the six services and the gateway on loopback with
   short timers (loadtests/chaos/system.py).
2. The buyers (verified accounts made by user_service's operator path) and the product, stock
   --stock, limit_per_user 1, opening a few seconds later.
3. For --duration seconds: the buyers arrive and order, pay, walk away or cancel, retrying lost
   answers with the same Idempotency-Key (loadtests/chaos/buyers.py), while the fault schedule
   drawn from --seed kills and restarts each app, Redis and MariaDB (loadtests/chaos/faults.py);
   every few seconds a sample checks what must hold at every moment.
4. The settle period: until nothing is held, pending or owed any more, or its bound.
5. The checker (loadtests/chaos/checker.py); exit 0 when every invariant holds, 1 when one
   broke, 2 when the run itself failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from loadtests.chaos.buyers import (
    MAX_ATTEMPTS,
    OPERATION_SECONDS,
    Attempt,
    Crowd,
    CrowdShape,
    plan_buyers,
)
from loadtests.chaos.checker import ChaosVerdict, judge, read_chaos_state
from loadtests.chaos.datastores import DatastoreError
from loadtests.chaos.faults import (
    APPS,
    DATASTORES,
    OPTIONAL,
    PROCESSOR_FAULTS,
    FaultPlan,
    FaultRecord,
    FaultRunner,
    plan_faults,
)
from loadtests.chaos.report import Sample, write_report
from loadtests.chaos.system import ChaosSystem, Timers, chaos_system, has_processor_simulator
from loadtests.seed import seed as seed_sale
from user_service.settings import Settings as UserSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
# Seconds from the seeding to the opening: the product must be live at stock_service first.
LEAD_SECONDS = 3.0
SAMPLE_EVERY_SECONDS = 5.0
# What a payment stuck in `pending` waits before payment_service's reaper fails it where it has
# no setting for it (before the processor simulator), and how often the reaper looks.
FIXED_STALE_PAYMENT_SECONDS = 60.0
STALE_INTERVAL_SECONDS = 2.0
SETTLE_SLACK_SECONDS = 30.0
# The replay round: every keyed request once more, 20 at a time.
REPLAY_SECONDS = 120.0


@dataclass(frozen=True)
class Bounds:
    """Every bound of one run, printed first and written into the report."""

    duration: float
    fault_window: tuple[float, float]
    faults: int
    max_down_seconds: float
    buyers: int
    arrive_within: float
    attempts_per_operation: int
    seconds_per_operation: float
    buyers_done_within: float
    settle_within: float
    run_within: float

    def lines(self) -> list[str]:
        return [
            f"bounds: sale {self.duration:.0f} s; {self.faults} faults between "
            f"{self.fault_window[0]:.0f} and {self.fault_window[1]:.0f} s, each down "
            f"<= {self.max_down_seconds:.1f} s (a restart waits <= 90 s)",
            f"        {self.buyers} buyers arriving within {self.arrive_within:.0f} s; each "
            f"request retried <= {self.attempts_per_operation} times within "
            f"{self.seconds_per_operation:.0f} s; all done within {self.buyers_done_within:.0f} s",
            f"        settle <= {self.settle_within:.0f} s after the buyers and faults end "
            f"(payment TTL + lease + stale-payment bound + stock's grace + slack); "
            f"whole sale <= {self.run_within:.0f} s",
        ]


def bounds_of(args: argparse.Namespace, plan: FaultPlan, timers: Timers) -> Bounds:
    arrive_within = args.duration * 0.85
    # Three operations a buyer at most (order, pay, cancel), each bounded, plus its pauses.
    buyers_done = arrive_within + 3 * (args.retry_for + 15.0) + 10.0
    stale = (timers.stale_payment_seconds if has_processor_simulator()
             else FIXED_STALE_PAYMENT_SECONDS)
    settle = (timers.payment_ttl_seconds + timers.payment_lease_seconds + stale
              + STALE_INTERVAL_SECONDS + timers.expired_hold_grace_seconds
              + SETTLE_SLACK_SECONDS)
    return Bounds(args.duration, plan.window, len(plan.faults), args.max_down, args.buyers,
                  arrive_within, MAX_ATTEMPTS, args.retry_for, buyers_done, settle,
                  max(buyers_done, args.duration + 100.0) + settle)


def processor_faults(timers: Timers) -> dict[str, dict[str, Any]]:
    """The simulator's faults, the slow one slower than the stale-payment bound by 10 s."""
    slow = int((timers.stale_payment_seconds + 10.0) * 1000)
    return {**PROCESSOR_FAULTS, "slow_past_reaper": {"latency_ms": slow}}


def targets_of(args: argparse.Namespace) -> tuple[str, ...]:
    wanted = tuple(args.kill) if args.kill else APPS + DATASTORES
    unknown = set(wanted) - set(APPS + DATASTORES + OPTIONAL)
    if unknown:
        raise SystemExit(f"--kill: unknown targets {sorted(unknown)}; known: "
                         f"{', '.join(APPS + DATASTORES + OPTIONAL)}")
    return wanted


async def sample_always(system: ChaosSystem, product_id: int, started: float,
                        samples: list[Sample], stop: asyncio.Event) -> None:
    """What must hold at every moment, not only after the settle period (no oversell, no double
    charge, no paid order whose charge was voided), every SAMPLE_EVERY_SECONDS."""
    always = ("no_oversell", "no_double_charge")
    while not stop.is_set():
        at = time.monotonic() - started
        try:
            # Not through the gateway: it may be the one down.
            state = await asyncio.wait_for(read_chaos_state(
                product_id, system.databases, host=None, simulator=None), 10)
        except Exception as error:
            samples.append(Sample(round(at, 1), None, {}, f"unreadable: {type(error).__name__}"))
        else:
            verdict = judge(state, [])
            broken = sorted(name for name in verdict.breaches if name in always)
            samples.append(Sample(round(at, 1), broken, verdict.facts["orders_by_status"],
                                  None))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_SECONDS)


async def settle(system: ChaosSystem, product_id: int, bound: float) -> tuple[float, bool]:
    """Until nothing is held, pending or owed, or `bound` seconds; returns (seconds, quiet)."""
    started = time.monotonic()
    queries = {
        "stock": "SELECT COUNT(*) FROM stock_holds WHERE product_id = :p AND state = 'held'",
        "order": "SELECT COUNT(*) FROM orders WHERE product_id = :p AND (status = "
                 "'pending_payment' OR stock_effect IS NOT NULL OR payment_effect IS NOT NULL)",
        "payment": "SELECT COUNT(*) FROM payments WHERE status = 'pending' AND :p > 0",
    }
    engines = {name: create_async_engine(system.databases[name], poolclass=NullPool)
               for name in queries}
    quiet_rounds = 0
    try:
        while time.monotonic() - started < bound:
            try:
                busy = 0
                for name, query in queries.items():
                    async with engines[name].connect() as conn:
                        busy += int((await conn.execute(text(query), {"p": product_id}))
                                    .scalar() or 0)
            except Exception:
                busy = -1
            # Twice in a row, a second apart: an effect between two reads is not missed.
            quiet_rounds = quiet_rounds + 1 if busy == 0 else 0
            if quiet_rounds >= 2:
                # Redis's view catches up with the ledger on the reconciler's round.
                await asyncio.sleep(3.0)
                return time.monotonic() - started, True
            await asyncio.sleep(1.0)
    finally:
        for engine in engines.values():
            await engine.dispose()
    return time.monotonic() - started, False


async def sale(args: argparse.Namespace, system: ChaosSystem, plan: FaultPlan,
               bounds: Bounds, timers: Timers) -> dict[str, Any]:
    users = UserSettings(database_url=system.databases["user"], jwt_key_dir=str(system.key_dir))
    seeded = await seed_sale(system.gateway_url, users, users=args.buyers, stock=args.stock,
                             opens_in=LEAD_SECONDS, limit_per_user=1)
    await asyncio.sleep(max(0.0, seeded.opens_at - time.time()))
    started, started_wall = time.monotonic(), time.time()
    print(f"sale open: product {seeded.product_id}, stock {args.stock}", flush=True)
    shape = CrowdShape(walk_away=args.walk_away, cancel_unpaid=args.cancel_unpaid,
                       declined=args.declined, refund=args.refund,
                       dropped_answers=args.dropped_answers)
    plans = plan_buyers(args.seed, seeded.accounts, arrive_within=bounds.arrive_within,
                        shape=shape)
    crowd = Crowd(system.gateway_url, seeded.product_id, args.seed, started, args.retry_for)
    runner = FaultRunner(
        plan, kill=system.kill, start=system.start,
        set_processor=system.set_processor_faults if system.simulator_url else None,
        processor_faults=processor_faults(timers), started_at=started)
    samples: list[Sample] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_always(system, seeded.product_id, started, samples,
                                                stop))
    try:
        await asyncio.wait_for(asyncio.gather(crowd.run(plans), runner.run()),
                               bounds.buyers_done_within + 120.0)
    finally:
        stop.set()
        await sampler
    ended = time.monotonic() - started
    print(f"buyers and faults done at {ended:.0f} s; settling (<= {bounds.settle_within:.0f} s)"
          " ...", flush=True)
    settled_in, quiet = await settle(system, seeded.product_id, bounds.settle_within)
    # The settled state is judged as read before the replay round (whose retries, if they do
    # new work where they should only answer again, leave new orders behind); what each key
    # made is read after it.
    state = await read_chaos_state(seeded.product_id, system.databases,
                                   host=system.gateway_url, simulator=system.simulator_url)
    made = {o.idempotency_key for o in state.orders if o.idempotency_key} | {
        p.idempotency_key for p in state.payments if p.idempotency_key}
    print(f"settled in {settled_in:.0f} s; every keyed request once more ...", flush=True)
    await asyncio.wait_for(crowd.replay(made), REPLAY_SECONDS)
    after_replay = await read_chaos_state(seeded.product_id, system.databases, host=None,
                                          simulator=None)
    verdict = judge(state, crowd.attempts, started_wall=started_wall,
                    after_replay=after_replay)
    return {"product_id": seeded.product_id, "started_wall": started_wall,
            "mariadb": system.mariadb,
            "attempts": crowd.attempts, "faults": runner.records, "samples": samples,
            "verdict": verdict, "ended": ended, "settled_in": settled_in, "quiet": quiet}


def run(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve() if args.out else (
        REPO_ROOT / ".data" / "chaos" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))
    out.mkdir(parents=True, exist_ok=True)
    timers = Timers(payment_ttl_seconds=args.ttl)
    simulated = has_processor_simulator() and not args.no_processor_faults
    plan = plan_faults(args.seed, duration=args.duration, targets=targets_of(args),
                       processor_faults=tuple(PROCESSOR_FAULTS) if simulated else (),
                       extra_kills=args.extra_kills, max_down_seconds=args.max_down)
    bounds = bounds_of(args, plan, timers)
    print(f"chaos run: {out}\nseed {args.seed}; load average before: "
          f"{', '.join(f'{n:.2f}' for n in os.getloadavg())}", flush=True)
    print("\n".join(bounds.lines()), flush=True)
    print("fault schedule: " + ", ".join(f"{f.at:.1f}s {f.label()}" for f in plan.faults),
          flush=True)
    # Settings default to production; the seeding and migrations read them too.
    os.environ["APP_ENV"] = "development"
    begun = time.monotonic()
    try:
        with chaos_system(out, timers=timers, seed=args.seed) as system:
            print(f"own system up in {time.monotonic() - begun:.0f} s (redis :{system.redis.port},"
                  f" mariadb :{system.mariadb.port}, gateway {system.gateway_url})", flush=True)
            outcome = asyncio.run(sale(args, system, plan, bounds, timers))
    except (DatastoreError, RuntimeError, OSError) as error:
        print(f"error: the run itself failed: {error}", flush=True)
        return 2
    verdict: ChaosVerdict = outcome["verdict"]
    attempts: list[Attempt] = outcome["attempts"]
    faults: list[FaultRecord] = outcome["faults"]
    (out / "attempts.json").write_text(json.dumps([a.as_dict() for a in attempts]))
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "seed": args.seed, "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "bounds": asdict(bounds), "timers": asdict(timers),
        "product_id": outcome["product_id"],
        "sale_opened_at": datetime.fromtimestamp(outcome["started_wall"], UTC).isoformat(
            timespec="milliseconds").replace("+00:00", "Z"),
        "sale_ended_at": round(outcome["ended"], 1),
        "settled_in": round(outcome["settled_in"], 1), "settled": outcome["quiet"],
        "faults": [record.as_dict() for record in faults],
        "samples": [asdict(sample) for sample in outcome["samples"]],
        "verdict": verdict.as_dict(),
    }
    paths = write_report(out, report, verdict, faults, outcome["samples"], attempts)
    if verdict.ok:
        # Kept after a failure, for inspection; a pass leaves only its report and logs.
        outcome["mariadb"].forget_data()
    for line in verdict.lines():
        print(line)
    failed = [r for r in faults if r.error]
    if failed:
        print(f"faults that did not complete: {[r.fault.label() for r in failed]}")
    print(f"report: {paths[0]}\n        {paths[1]}", flush=True)
    return 0 if verdict.ok and not failed else 1


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=90.0,
                        help="seconds of sale with faults (buyers arrive in the first 85%%)")
    parser.add_argument("--buyers", type=int, default=300)
    parser.add_argument("--stock", type=int, default=60)
    parser.add_argument("--ttl", type=int, default=15,
                        help="ORDER_PAYMENT_TTL_SECONDS of the run's system")
    parser.add_argument("--kill", nargs="*", default=None,
                        help=f"what is killed once each (default all: "
                             f"{' '.join(APPS + DATASTORES)}; also {' '.join(OPTIONAL)})")
    parser.add_argument("--extra-kills", type=int, default=6,
                        help="more kills drawn from the money path (gateway, order, payment, "
                             "stock)")
    parser.add_argument("--max-down", type=float, default=3.0,
                        help="at most this many seconds between a kill and its restart")
    parser.add_argument("--walk-away", type=float, default=0.15)
    parser.add_argument("--cancel-unpaid", type=float, default=0.1)
    parser.add_argument("--declined", type=float, default=0.1)
    parser.add_argument("--refund", type=float, default=0.25,
                        help="share of paid orders cancelled afterwards (refunds)")
    parser.add_argument("--dropped-answers", type=float, default=0.2,
                        help="share of orders and payments whose first answer the buyer drops")
    parser.add_argument("--retry-for", type=float, default=OPERATION_SECONDS,
                        help="seconds a buyer keeps retrying one request (default past the 60 "
                             "s after which a key whose first attempt died is claimed again)")
    parser.add_argument("--no-processor-faults", action="store_true",
                        help="the processor simulator runs calm (no slow charges, lost answers "
                             "or duplicated webhooks)")
    parser.add_argument("--out", default=None, help="default .data/chaos/<UTC timestamp>/")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.buyers <= 0 or args.stock < 0:
        parser.error("--duration and --buyers must be positive, --stock not negative")
    sys.exit(run(args))


if __name__ == "__main__":
    main()
