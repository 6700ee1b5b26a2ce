"""`make load`: a sale opening under a crowd, then a verdict on what the system did.

1. Without --host, finds or starts MariaDB and Redis as `make run` does (TEST_MYSQL_URL's server,
   --redis-url), then starts its own system on loopback: all six services and the gateway, on
   fresh schemas preorder_*_load (TEST_NAMESPACE appended) and LOAD_REDIS_URL (default
   database 13, emptied first), with a short ORDER_PAYMENT_TTL_SECONDS (--ttl). With --host it
   targets a running system instead: the seeding and the checker then need that system's
   user, order, stock and payment settings in the environment (USER_DATABASE_URL, its signing
   key, ORDER_DATABASE_URL, ...), as its operators have them, and --ttl must be its TTL.
2. Seeds (loadtests/seed.py): the buyers and social users, verified and signed in, and the
   product, opening --lead seconds later.
3. Runs the buyers (loadtests/crowd.py: a lean asyncio crowd, --crowd-processes processes, each
   buyer with its own connections, holding the product's live stream before the opening and
   following a 202's ticket to its final answer) and, beside them, Locust headless
   (loadtests/locustfile.py: browsers holding the live stream, social users; one master and
   --workers workers), which is stopped once every buyer has finished.
4. Waits until the payment TTL has passed and every unpaid order has given its units back
   (bounded; a hold no order records is waited for until order_service's orphan sweep is due),
   then runs the checker (loadtests/checker.py).
5. Writes .data/loadtests/<UTC timestamp>/: Locust's report.html and CSVs, outcomes.json (every
   order and payment answer, every buyer's record), summary.json (figures, fairness, CPU seconds
   per process, the checker's
   verdict), chart.png, seed.json and the services' logs; prints the verdict. Exits 1 when an
   invariant broke (summary.json's "checker" says which), 2 when the run itself failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from deploy.run_local import Datastores, LogStream, SetupError, ensure_datastores
from loadtests.checker import (
    answers_by_status,
    check,
    line_redis_url,
    read_state,
    service_databases,
)
from loadtests.crowd import raise_open_files_limit
from loadtests.report import draw_chart, summarise
from loadtests.seed import seed
from loadtests.system import (
    ServiceSystem,
    cpu_seconds,
    datastore_pids,
    hello_world,
    parse_replicas,
    service_system,
)
from loadtests.wrk import generator_name, measure
from order_service.settings import Settings as OrderSettings
from shared.services import SERVICES
from shared.testing.datastores import TEST_MYSQL_URL, forget_redis_keys
from shared.testing.net import free_port
from user_service.settings import Settings as UserSettings
from user_service.settings import get_settings as user_settings

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = REPO_ROOT / "loadtests" / "locustfile.py"
# A database of its own: emptied at the start of every run (never make run's 0, the tests' 15 or
# the benchmarks' 14).
LOAD_REDIS_URL = os.environ.get("LOAD_REDIS_URL", "redis://127.0.0.1:6379/13")
# After the TTL: the expiry loop's round, the effect's delivery to stock_service, and slack for
# a machine still busy with the run.
SETTLE_SECONDS = 30.0
# A hold no order records is given back once it is this old, on the sweep's next round
# (order_service's defaults, which the run's own system keeps).
ORPHAN_SWEPT_SECONDS: float = (OrderSettings.model_fields["orphan_hold_after_seconds"].default
                               + OrderSettings.model_fields["orphan_interval_seconds"].default)
# Buyers per crowd process: each holds a socket or two, and a process may open 20,000 files here
# (a hard limit only a privileged user can raise).
BUYERS_PER_CROWD_PROCESS = 8000


@dataclass(frozen=True)
class Target:
    host: str
    databases: dict[str, str]
    user_settings: UserSettings
    # The processes whose CPU is reported (empty for a system this run did not start).
    pids: dict[str, int]
    logs: Path | None
    # Every gateway the buyers spread over (the own system's replicas; else just `host`).
    hosts: tuple[str, ...] = ()
    # order_service's Redis, where the checker reads the line's records.
    line_redis_url: str | None = None


@contextmanager
def own_system(out: Path, ttl: float, *, redis_url: str, schema_suffix: str,
               gateways: int = 1, replicas: dict[str, int] | None = None) -> Iterator[Target]:
    # Fresh schemas number products from 1 again: keys of an earlier run would speak for them.
    forget_redis_keys(redis_url, "")
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {"ORDER_PAYMENT_TTL_SECONDS": str(int(ttl))}
    with service_system([s.name for s in SERVICES], logs, redis_url=redis_url,
                        schema_suffix=schema_suffix, env=env, gateways=gateways,
                        replicas=replicas) as system:
        yield _target(system, logs, redis_url)


def _target(system: ServiceSystem, logs: Path, redis_url: str) -> Target:
    databases = {name: system.databases[name] for name in ("order", "stock", "payment")}
    settings = UserSettings(database_url=system.databases["user"],
                            jwt_key_dir=str(system.key_dir))
    # MariaDB's and Redis's CPU too: shared with anything else using them at the time.
    return Target(system.gateway.url, databases, settings,
                  {**system.pids(), **datastore_pids()}, logs,
                  tuple(g.url for g in system.gateways), redis_url)


@contextmanager
def running_system(host: str) -> Iterator[Target]:
    yield Target(host.rstrip("/"), service_databases(), user_settings(), {}, None,
                 (host.rstrip("/"),), line_redis_url())


@dataclass
class CrowdRun:
    returncode: int
    cpu: dict[str, float]
    seconds: float
    # The crowd's files and Locust's counts, merged: what the report and the checker read.
    outcomes: dict[str, Any] | None


def crowd_processes(args: argparse.Namespace) -> int:
    return int(args.crowd_processes) or max(1, math.ceil(args.buyers / BUYERS_PER_CROWD_PROCESS))


def run_crowd(args: argparse.Namespace, target: Target, seed_file: Path, out: Path,
              run_time: float) -> CrowdRun:
    """The buyers (loadtests/crowd.py, its processes sharing them) and, when there are
    browsers or social users, Locust beside them (one master and args.workers workers), stopped
    once the buyers are done. Returns the merged answers and the CPU seconds each of these
    processes used (its rusage, as it is reaped)."""
    shards = crowd_processes(args)
    crowd = [sys.executable, "-m", "loadtests.crowd", "--seed-file", str(seed_file),
             "--hosts", ",".join(target.hosts or (target.host,)), "--buyers", str(args.buyers),
             "--walk-away", str(args.walk_away), "--declined", str(args.declined),
             "--double-tap", str(args.double_tap), "--live-share", str(args.live_share),
             "--ramp", str(max(1.0, args.lead - 8.0)), "--deadline", str(args.answer_deadline),
             "--retry-for", str(args.idempotent_retries), "--shards", str(shards)]
    port = free_port()
    common = ["-f", str(LOCUSTFILE), "--loglevel", "WARNING"]
    master = [sys.executable, "-m", "locust", *common, "--master", "--headless",
              "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
              "--expect-workers", str(args.workers), "-u", str(args.browsers + args.social),
              "-r", str(args.spawn_rate), "--run-time", f"{int(run_time)}s",
              "--stop-timeout", "5", "--host", target.host, "--seed-file", str(seed_file),
              "--buyers", str(args.buyers), "--browsers", str(args.browsers),
              "--social", str(args.social), "--outcomes-file", str(out / "locust_outcomes.json"),
              "--html", str(out / "report.html"), "--csv", str(out / "locust"),
              "--only-summary"]
    worker = [sys.executable, "-m", "locust", *common, "--worker", "--master-host", "127.0.0.1",
              "--master-port", str(port)]
    started = time.monotonic()
    with (out / "locust.log").open("wb") as log, (out / "crowd.log").open("wb") as crowd_log:
        buyers = {f"crowd {n}": subprocess.Popen(
            [*crowd, "--shard", str(n), "--out", str(out / f"crowd_{n}.json")],
            stdout=crowd_log, stderr=crowd_log, cwd=REPO_ROOT) for n in range(shards)}
        others: dict[str, subprocess.Popen[bytes]] = {}
        if args.browsers + args.social > 0:
            others["locust master"] = subprocess.Popen(master, stdout=log, stderr=log,
                                                       cwd=REPO_ROOT)
            for n in range(args.workers):
                others[f"locust worker {n}"] = subprocess.Popen(worker, stdout=log, stderr=log,
                                                                cwd=REPO_ROOT)
        cpu: dict[str, float] = {}
        try:
            for name, process in buyers.items():
                # Each ends by itself, --answer-deadline after the opening at the latest.
                cpu[name] = reap(process, timeout=run_time + 60)
            if "locust master" in others:
                time.sleep(2.0)  # the crowd's last answers settle in the browsers' figures
                # Stops, then reports. Not Popen.send_signal: its poll() would reap a master
                # that already ended (--run-time), and its rusage with it.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(others["locust master"].pid, signal.SIGTERM)
            for name, process in others.items():
                # The master ends on the signal (--run-time at the latest); workers follow it,
                # or are stopped when they outlive it by long (a dead master never says quit).
                cpu[name] = reap(process, timeout=60.0)
        finally:
            for process in [*buyers.values(), *others.values()]:
                if process.returncode is None:
                    process.kill()
                    reap(process, timeout=None)
    returncode = max(p.returncode or 0 for p in buyers.values())
    return CrowdRun(returncode, cpu, time.monotonic() - started,
                    merge_outcomes(out, shards) if returncode == 0 else None)


def merge_outcomes(out: Path, shards: int) -> dict[str, Any]:
    """outcomes.json: every crowd process's buyers, records and counts, and Locust's counts."""
    merged: dict[str, Any] = {"counts": [], "records": [], "buyers": [], "retried": 0}
    parts = [out / f"crowd_{n}.json" for n in range(shards)] + [out / "locust_outcomes.json"]
    for part in parts:
        if part.exists():
            data = json.loads(part.read_text())
            for key in ("counts", "records", "buyers"):
                merged[key] += data.get(key, [])
            merged["retried"] += data.get("retried", 0)
    merged["records"].sort(key=lambda r: r[3])
    merged["buyers"].sort(key=lambda b: b["index"])
    merged["buyers_done"] = len(merged["buyers"])
    (out / "outcomes.json").write_text(json.dumps(merged))
    return merged


def reap(process: subprocess.Popen[bytes], *, timeout: float | None) -> float:
    """Wait for `process` (terminating it after `timeout` seconds) and return the CPU seconds it
    used, from its rusage: /proc forgets a process once it has been reaped."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG if deadline else 0)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        if deadline is not None and time.monotonic() > deadline:
            process.terminate()
            deadline = None
        else:
            time.sleep(0.2)


def orphans_swept_within(newest_held_age: float) -> float:
    """Seconds from now until a hold this old, if its order was never written, has been given
    back by order_service's orphan sweep (its bound, its next round, then the settling time);
    negative once that has passed."""
    return ORPHAN_SWEPT_SECONDS + SETTLE_SECONDS - newest_held_age


async def wait_for_returns(stock_url: str, product_id: int, *, due_at: float) -> float:
    """Until `due_at` (epoch seconds: the opening plus the TTL) and the ledger holds nothing
    of the product any more, or the settling time is up, later if the newest hold still held may
    be an orphan whose sweep is not due yet; returns the seconds waited."""
    started = time.monotonic()
    await asyncio.sleep(max(0.0, due_at - time.time()))
    engine = create_async_engine(stock_url, poolclass=NullPool)
    deadline = time.monotonic() + SETTLE_SECONDS
    try:
        while time.monotonic() < deadline:
            async with engine.connect() as conn:
                held = (await conn.execute(text(
                    "SELECT held FROM stock_products WHERE product_id = :p"),
                    {"p": product_id})).scalar()
                if not held:
                    break
                # Seen at 20,000 buyers: decisions ran a minute past the opening, and the holds
                # of the few cut off after their reserve were checked before their sweep.
                newest_age = (await conn.execute(text(
                    "SELECT TIMESTAMPDIFF(MICROSECOND, MAX(created_at), UTC_TIMESTAMP(6)) "
                    "FROM stock_holds WHERE product_id = :p AND state = 'held'"),
                    {"p": product_id})).scalar()
            if newest_age is not None:
                deadline = max(deadline, time.monotonic() + orphans_swept_within(
                    newest_age / 1e6))
            await asyncio.sleep(1.0)
        # Effects to order_service (a payment's outcome) land on their own rounds too.
        await asyncio.sleep(3.0)
    finally:
        await engine.dispose()
    return time.monotonic() - started


def hello_rate(url: str, seconds: float) -> float:
    """The hello-world's requests per second (64 connections), on this machine as it is now."""
    result = asyncio.run(measure("hello-world", url, headers={}, connections=64,
                                 seconds=seconds))
    print(f"hello-world ({generator_name()}): {result.rps:,.0f} req/s", flush=True)
    return result.rps


def hello_figures(rates: Sequence[float], summary: dict[str, Any]) -> dict[str, Any]:
    """The hello-world measured before the seed and after the buyers, and the opening's
    decisions per second as a share of their mean: the figure that survives a busy machine."""
    if not rates:
        return {}
    mean = sum(rates) / len(rates)
    decisions = summary["decisions_at_opening"]["per_second"]
    return {"rps": [round(r, 1) for r in rates], "generator": generator_name(),
            "decisions_per_hello": round(decisions / mean, 4) if mean else None}


def machine(load_before: tuple[float, float, float]) -> dict[str, Any]:
    """What ran the test, and how busy it was before (a shared machine's other work shows in
    every figure)."""
    return {"host": socket.gethostname(), "cpus": os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version(),
            "load_average_before": [round(n, 2) for n in load_before]}


def run(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else (
        REPO_ROOT / ".data" / "loadtests" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))
    out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    # Inherited by the services and the crowd: every buyer holds a socket or two in each.
    raise_open_files_limit()
    print(f"load run: {out} (load average before: "
          f"{', '.join(f'{n:.2f}' for n in load_before)})", flush=True)
    with ExitStack() as stack:
        if args.host:
            target = stack.enter_context(running_system(args.host))
        else:
            # As make run does: MariaDB and Redis used if they answer, else started (Docker, or
            # the OS packages), so that a fresh clone's `make load` needs nothing beforehand.
            try:
                asyncio.run(ensure_datastores(LogStream(sys.stdout), Datastores(
                    (TEST_MYSQL_URL,), (args.redis_url,))))
            except SetupError as error:
                print(f"error: {error}", flush=True)
                return 2
            print("starting the services and the gateway on loopback "
                  f"(ORDER_PAYMENT_TTL_SECONDS={int(args.ttl)}) ...", flush=True)
            target = stack.enter_context(own_system(out, args.ttl, redis_url=args.redis_url,
                                                    schema_suffix=args.schema_suffix,
                                                    gateways=args.gateways,
                                                    replicas=args.replicas))
        hello_url = stack.enter_context(hello_world()) if args.hello_seconds > 0 else None
        hello = [hello_rate(hello_url, args.hello_seconds)] if hello_url else []
        seeded_at = time.monotonic()
        sale = asyncio.run(seed(target.host, target.user_settings,
                                users=args.buyers + args.social, stock=args.stock,
                                opens_in=args.lead, limit_per_user=args.limit_per_user))
        seed_file = out / "seed.json"
        sale.write(seed_file)
        print(f"seeded {len(sale.accounts)} users and product {sale.product_id} in "
              f"{time.monotonic() - seeded_at:.1f} s; the sale opens at {sale.sale_opens_at}",
              flush=True)
        before = {name: cpu_seconds(pid) for name, pid in target.pids.items()}
        run_time = (sale.opens_at - time.time()) + args.answer_deadline + 30
        print(f"crowd: {args.buyers} buyers in {crowd_processes(args)} process(es) over "
              f"{len(target.hosts)} gateway(s); locust: {args.browsers} browsers, "
              f"{args.social} social users, 1 master + {args.workers} workers ...", flush=True)
        crowd = run_crowd(args, target, seed_file, out, run_time)
        cpu = {name: round(cpu_seconds(pid) - before[name], 2)
               for name, pid in target.pids.items()}
        cpu.update({name: round(seconds, 2) for name, seconds in crowd.cpu.items()})
        outcomes = crowd.outcomes
        if outcomes is None:
            print(f"the crowd failed (exit {crowd.returncode}); see {out}/crowd.log", flush=True)
            return 2
        if hello_url:
            # While the TTL runs out: the machine as busy as it is around the run.
            hello.append(hello_rate(hello_url, args.hello_seconds))
        print("waiting for the payment TTL and the units' return ...", flush=True)
        asyncio.run(wait_for_returns(target.databases["stock"], sale.product_id,
                                     due_at=sale.opens_at + args.ttl))
        state = asyncio.run(read_state(sale.product_id, target.databases, host=target.host,
                                       line_redis_url=target.line_redis_url))
    figures = summarise(outcomes, sale.opens_at, state.decided_again, state.stamps)
    verdict = check(state, after_ttl=True, answers=answers_by_status(outcomes),
                    buyers=outcomes["buyers"])
    summary = {
        "date": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "machine": machine(load_before),
        "target": "own system on loopback" if not args.host else args.host,
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "redis_url")},
        "product_id": sale.product_id, "sale_opens_at": sale.sale_opens_at,
        **figures,
        "hello_world": hello_figures(hello, figures),
        "cpu_seconds": dict(sorted(cpu.items(), key=lambda item: -item[1])),
        "crowd_exit_code": crowd.returncode,
        "checker": verdict.as_dict(),
        "files": {name: str(out / name) for name in
                  ("report.html", "locust_stats.csv", "outcomes.json", "chart.png", "seed.json")},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    verdict_line = "checker PASS" if verdict.ok else (
        f"checker FAIL: {', '.join(sorted(verdict.breaches))}")
    draw_chart(outcomes, sale.opens_at, out / "chart.png",
               f"{args.buyers} buyers at the opening, stock {args.stock}, "
               f"{summary['date']} on {summary['machine']['host']}; {verdict_line}")
    print_summary(summary, verdict.lines())
    return 0 if verdict.ok else 1


def print_summary(summary: dict[str, Any], verdict: Sequence[str]) -> None:
    decisions = summary["decisions_at_opening"]
    print(f"decisions at the opening: {decisions['per_second']:,.0f}/s "
          f"({decisions['decided']} of {decisions['orders']} orders decided in "
          f"{decisions['seconds']} s; {decisions['sent_in_first_second']} sent in its first "
          "second)")
    buyers = summary.get("buyers_at_opening")
    if buyers:
        first, final, fair = buyers["first_answer"], buyers["final_answer"], buyers["fairness"]
        print(f"buyers: {buyers['buyers']}, tickets {buyers['tickets']}; by final answer: "
              f"{json.dumps(buyers['orders_by_final'])}")
        print(f"  first answer (ticket or final) from the opening: p50 {first['p50_s']} s, "
              f"p99 {first['p99_s']} s, max {first['max_s']} s; within 2 s "
              f"{first['share_within_2_s']:.1%}")
        print(f"  final answer from the opening: p50 {final['p50_s']} s, p99 {final['p99_s']} s, "
              f"max {final['max_s']} s; within 1 s {final['share_within_1_s']:.1%}, within 10 s "
              f"{final['share_within_10_s']:.1%}")
        phases = buyers.get("phases")
        if phases:
            print(f"  where the time went: the crowd's last send at {phases['last_sent_s']} s, "
                  f"the first order answered at {phases['first_order_s']} s, the first "
                  f"sold_out at {phases['first_sold_out_s']} s, the final answers' p99 at "
                  f"{final['p99_s']} s")
        waiting = buyers.get("waiting")
        if waiting and waiting["heard_a_move"] is not None:
            unmoved = waiting["longest_unmoved"]
            print(f"  waiting in line 2 s or more: {waiting['waited_2_s_or_more']} tickets, "
                  f"{waiting['heard_a_move']:.1%} heard their position move; the longest each "
                  f"went without a move: p50 {unmoved['p50_s']} s, p95 {unmoved['p95_s']} s")
        excused = fair["cut_by_faults"] + fair["decided_again"]
        print(f"  fairness over {fair['granted']} winners of {fair['buyers']}: Spearman "
              f"{fair['spearman']}, earliest arrivals' share of the winners "
              f"{fair['earliest_share']}{'' if fair['judged'] else ' (too few to judge)'}"
              + (f"; {fair['cut_by_faults']} winners whose request a fault cut and "
                 f"{fair['decided_again']} whose place was decided again left out of the "
                 "Spearman" if excused else ""))
        stamps = fair.get("stamps")
        if stamps:
            print(f"  the gateway's arrival stamps against the sends: Spearman "
                  f"{stamps['spearman']} over {stamps['tickets']} tickets, "
                  f"{stamps['stamped_before_the_send_ahead']} stamped before the one sent ahead")
    hello = summary.get("hello_world")
    if hello:
        print(f"hello-world in the same run: {', '.join(f'{r:,.0f}' for r in hello['rps'])} "
              f"req/s ({hello['generator']}); decisions at the opening / hello-world "
              f"{hello['decisions_per_hello']}")
    both = summary["orders_and_payments"]
    print(f"orders and payments: {both['per_second']:,.0f} requests/s over {both['seconds']} s, "
          f"mean {both['mean_ms']} ms")
    for route, figures in summary["latency"].items():
        print(f"{route:<16} n={figures['count']:<5} p50 {figures['p50_ms']} ms  "
              f"p95 {figures['p95_ms']} ms  p99 {figures['p99_ms']} ms")
    print("answers other than 2xx, by code:", json.dumps(summary["errors_by_code"]))
    print("CPU seconds:", ", ".join(f"{n} {s}" for n, s in summary["cpu_seconds"].items()))
    print("\n".join(verdict))
    print(f"report: {summary['files']['report.html']}\nchart:  {summary['files']['chart.png']}\n"
          f"summary: {Path(summary['files']['chart.png']).with_name('summary.json')}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--host", default=None,
                        help="a running system's gateway (default: start one on loopback)")
    parser.add_argument("--buyers", type=int, default=2000)
    parser.add_argument("--stock", type=int, default=200)
    parser.add_argument("--browsers", type=int, default=100)
    parser.add_argument("--social", type=int, default=50)
    parser.add_argument("--limit-per-user", type=int, default=1)
    parser.add_argument("--double-tap", type=float, default=0.05,
                        help="share of buyers who send two orders at once")
    parser.add_argument("--walk-away", type=float, default=0.2)
    parser.add_argument("--declined", type=float, default=0.2)
    parser.add_argument("--idempotent-retries", type=float, default=0.0,
                        help="seconds buyers retry a 5xx with the same Idempotency-Key (0: never)")
    parser.add_argument("--ttl", type=float, default=20.0,
                        help="ORDER_PAYMENT_TTL_SECONDS of the system (set on the own one)")
    parser.add_argument("--lead", type=float, default=30.0,
                        help="seconds from the seeding to the opening (covers the spawning)")
    parser.add_argument("--live-share", type=float, default=1.0,
                        help="share of buyers holding the live stream until they buy (the "
                             "others close it after its first event)")
    parser.add_argument("--answer-deadline", type=float, default=60.0,
                        help="seconds after the opening by which every buyer is given up")
    parser.add_argument("--crowd-processes", type=int, default=0,
                        help=f"buyers' processes (default: one per {BUYERS_PER_CROWD_PROCESS:,})")
    parser.add_argument("--gateways", type=int, default=1,
                        help="own system: gateway processes, the buyers spread over them")
    parser.add_argument("--replicas", type=lambda text: parse_replicas(
                            text, [s.name for s in SERVICES]), default={},
                        help="own system: processes of an app behind one name, e.g. "
                             "order=2,stock=2 (as an orchestrator runs replicas)")
    parser.add_argument("--hello-seconds", type=float, default=5.0,
                        help="the hello-world measured this long before the seed and after the "
                             "buyers (0: not measured)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="Locust workers for browsers and social users (default: one per "
                             "core)")
    parser.add_argument("--spawn-rate", type=float, default=250.0,
                        help="users started per second, over all workers")
    parser.add_argument("--redis-url", default=LOAD_REDIS_URL,
                        help="own system: its Redis database, emptied first (LOAD_REDIS_URL)")
    parser.add_argument("--schema-suffix", default="load",
                        help="own system: schemas preorder_<service>_<suffix>, rebuilt first")
    parser.add_argument("--out", default=None,
                        help="default .data/loadtests/<UTC timestamp>/")
    sys.exit(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
