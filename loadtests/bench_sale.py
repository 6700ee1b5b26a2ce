"""The sale's opening second: N signed-in buyers order one unit of a product with stock S the
moment it opens, all through the gateway.

    python -m loadtests.bench_sale [--buyers 2000] [--stock 200] [--connections 500]
        [--replicas gateway=2,order=2,stock=2]

It starts its own user_service, stock_service, order_service, payment_service and gateway on
loopback (schemas preorder_*_bench, Redis database BENCH_REDIS_URL), makes the buyers in bulk
(verified accounts with tokens, by user_service's operator path: no Argon2, no SMTP), lets each
buyer's token be seen once (as a signed-in app would), then registers the product
with its window opening a few seconds ahead, and at that second sends every order at once.

It prints the order decisions per second through the gateway (answers of 201 or 409 over the
time from the first order sent to the last answer), p50/p99, the answers by code, the stock
left and sold by the ledger (oversold = sold + held beyond the stock), the raw Lua reserve
rate on Redis and a hello-world rate measured in the same run with the ratios, and the CPU
seconds each process used during the burst. After each phase its winners pay, all at once, with
the card that always succeeds: payments a second, p50/p99, and the CPU each process spent per
payment (the money path: the payment's lease, the charge, its webhook, the order paid and its
units sold). Loopback only; bounded; stops by itself.

--replicas runs several processes of the gateway, order_service or stock_service, each set on
one port at 127.0.0.1, 127.0.0.2, ... behind one name (loadtests/system.py), as an orchestrator
runs replicas: the buyers' client spreads its connections over the gateways, the gateways over
the order replicas, and order_service's calls over the stock replicas (shared/replicas.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from loadtests.bench_stock import evalsha_rate
from loadtests.signed import sign
from loadtests.system import (
    BENCH_REDIS_URL,
    ServiceSystem,
    cpu_seconds,
    datastore_pids,
    hello_world,
    metrics_url,
    service_system,
)
from loadtests.system import parse_replicas as system_replicas
from loadtests.wrk import measure
from shared.clock import utcnow
from shared.db import create_engine, create_sessionmaker
from shared.internal.stock import product_path
from shared.replicas import Resolver
from shared.schemas import to_utc_z
from shared.testing.datastores import TEST_MYSQL_URL, forget_redis_keys
from shared.testing.identity import service_identity_headers
from stock_service.stock.scripts import RESERVE, ProductKeys
from user_service.auth.bulk import BulkAccount, create_verified_accounts
from user_service.auth.tokens import TokenSigner
from user_service.settings import Settings as UserSettings

SALE_APPS = ("user", "stock", "order", "payment")
MYSQL_SERVER_URL = TEST_MYSQL_URL + "/mysql"
GOAL_DECISIONS_PER_SECOND = 1000
GOAL_P99_MS = 500
CARD_OK = "4242424242424242"  # the contract's card that always succeeds
PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")


class SaleBench(ServiceSystem):
    def pids(self) -> dict[str, int]:
        """The services' processes, this one (the buyers' client: it shares the cores), and
        the local MariaDB and Redis servers when they run here (shared with anything else that
        uses them at the time)."""
        return {**super().pids(), "buyers' client": os.getpid(), **datastore_pids()}


@contextmanager
def sale_bench(workdir: Path, replicas: dict[str, int] | None = None) -> Iterator[SaleBench]:
    for prefix in ("{p:", "stock:", "idem:", "auth:"):
        forget_redis_keys(BENCH_REDIS_URL, prefix)
    with service_system(SALE_APPS, workdir, redis_url=BENCH_REDIS_URL, schema_suffix="bench",
                        replicas=replicas) as system:
        yield SaleBench(**vars(system))


def parse_replicas(text: str) -> dict[str, int]:
    """`gateway=2,order=2` -> {"gateway": 2, "order": 2}."""
    return system_replicas(text, SALE_APPS)


async def make_buyers(bench: ServiceSystem, count: int) -> list[BulkAccount]:
    settings = UserSettings(database_url=bench.databases["user"], jwt_key_dir=str(bench.key_dir))
    engine = create_engine(settings.database_url, pool_size=2)
    try:
        return await create_verified_accounts(create_sessionmaker(engine),
                                              TokenSigner.from_settings(settings), count=count,
                                              password="bench buyer password")
    finally:
        await engine.dispose()


@dataclass(frozen=True)
class Answer:
    status: int
    code: str
    started: float
    ended: float
    # The order made (a 201's id), for the winners' payments.
    order_id: int | None = None


async def send_all(url: str, buyers: list[BulkAccount], *, connections: int, rate: float,
                   open_sale: Callable[[], Awaitable[tuple[int, float]]], pids: dict[str, int],
                   profile: Path | None, hosts: dict[str, list[str]] | None = None,
                   marks: dict[str, tuple[float, dict[str, int]]] | None = None,
                   ) -> tuple[list[Answer], dict[str, float]]:
    """Every buyer's order from the moment the sale `open_sale` schedules opens: all at once
    (rate 0), or `rate` buyers a second in an even stream. Returns the answers, each timed from
    when it was due (so a request the client was slow to send is not flattered), and the CPU
    seconds each process used from the end of the warm-up to the last answer."""
    # Several gateways behind one name: new connections go to each in turn.
    connector = aiohttp.TCPConnector(limit=connections, resolver=Resolver(hosts))
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session, \
            DatastoreCounters() as counters:
        # Connections are opened (and the tokens seen) before the opening, as by apps that
        # have been open on the product page; the sale opens soon after, before the servers'
        # keep-alive timeout (uvicorn's 5 s) closes them.
        await asyncio.gather(*(_warm(session, url, buyer) for buyer in buyers))
        product_id, at = await open_sale()
        marks = {} if marks is None else marks
        marks["quiet"] = (time.monotonic(), await counters.read())
        before = {name: cpu_seconds(pid) for name, pid in pids.items() if alive(pid)}
        seconds = len(buyers) / rate if rate else 0.0
        recorders = await start_profiles(profile, pids, seconds=at - time.time() + seconds + 4)
        await asyncio.sleep(max(0.0, at - time.time()))
        marks["opened"] = (time.monotonic(), await counters.read())
        opened = time.perf_counter()

        async def buy(index: int, buyer: BulkAccount) -> Answer:
            due = opened + (index / rate if rate else 0.0)
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            try:
                async with session.post(
                        f"{url}/api/v1/orders",
                        headers={"Authorization": f"Bearer {buyer.access_token}"},
                        json={"product_id": product_id, "quantity": 1}) as response:
                    body: Any = await response.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError) as error:
                # Counted, not fatal: a warm connection the gateway let go of before the
                # opening (its keep-alive is 5 s; a machine this busy can take longer).
                return Answer(0, type(error).__name__, due, time.perf_counter())
            code = body.get("code") or body.get("status") if isinstance(body, dict) else ""
            order_id = body.get("id") if response.status == 201 else None
            return Answer(response.status, str(code), due, time.perf_counter(), order_id)

        answers = await asyncio.gather(*(buy(n, buyer) for n, buyer in enumerate(buyers)))
        # A process gone meanwhile (a Redis of some other run, found by name) is left out.
        used = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()
                if name in before and alive(pid)}
        await asyncio.sleep(1)  # effects are after-commit: let them land before counting
        marks["done"] = (time.monotonic(), await counters.read())
        for recorder in recorders:
            await recorder.wait()
        return answers, used


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


async def start_profiles(prefix: Path | None, pids: dict[str, int],
                         seconds: float) -> list[asyncio.subprocess.Process]:
    """py-spy on each service from now for `seconds`, into `<prefix><service>.txt` (the CPU
    figures of a profiled run are py-spy's as much as the services': read them from a run
    without it)."""
    if prefix is None:
        return []
    return [await asyncio.create_subprocess_exec(
        PY_SPY, "record", "--pid", str(pid), "--rate", "250", "--format", "raw",
        "--duration", str(max(1, round(seconds))), "--output", f"{prefix}{name}.txt",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        for name, pid in pids.items() if name in ("gateway", "order", "stock", "payment")]


async def _warm(session: aiohttp.ClientSession, url: str, buyer: BulkAccount) -> None:
    async with session.get(f"{url}/api/v1/orders?limit=1",
                           headers={"Authorization": f"Bearer {buyer.access_token}"}) as response:
        await response.read()


async def register_product(bench: ServiceSystem, *, stock: int, opens_in: float) -> tuple[int, float]:
    """Registered at stock_service as product_service would; returns its id and opening (epoch)."""
    product_id = int.from_bytes(os.urandom(4), "big") + 1
    opens_at = utcnow() + timedelta(seconds=opens_in)
    body = {"seller_id": 1, "price": 99_000, "total": stock, "sale_opens_at": to_utc_z(opens_at)}
    raw = json.dumps(body).encode()
    signed = sign(service_identity_headers("product_service", bench.identity_key), method="PUT",
                  target=product_path(product_id), body=raw, audience="stock_service")
    async with aiohttp.ClientSession() as session, session.put(
            bench.processes["stock"].url + product_path(product_id), data=raw,
            headers={**signed, "Content-Type": "application/json"}) as response:
        assert response.status == 200, await response.text()
    return product_id, opens_at.timestamp()


async def redis_only_product() -> tuple[str, int]:
    """The reserve script's SHA and a product that lives only in Redis (as a rebuild would load
    it), for the raw rate: one registered with stock_service would disagree with its ledger
    under holds no order made, and be rebuilt during the burst."""
    product_id = int.from_bytes(os.urandom(4), "big") + 1
    redis: Any = Redis.from_url(BENCH_REDIS_URL)
    try:
        await redis.hset(ProductKeys.of(product_id).meta, mapping={
            "total": 10**12, "remaining": 10**12, "held": 0, "sold": 0, "opens": 0, "closes": 0,
            "limit": 0, "price": 1, "seller": 1, "active": 1, "gen": 1})
        return str(await redis.script_load(RESERVE)), product_id
    finally:
        await redis.aclose()


# Route labels are templates with braces of their own: the labels run to the last "} ".
_REQUESTS = re.compile(r"^http_requests_total\{(?P<labels>.*)\} (?P<count>\S+)$", re.M)


_DURATIONS = re.compile(
    r"^http_request_duration_seconds_(?P<kind>sum|count)\{(?P<labels>.*)\} (?P<value>\S+)$", re.M)
# Where an order's time goes, from each service's own /metrics: (process, method, route part).
# stock_service's leg is the batch of reserves (POST .../holds: the route label ends there).
LEGS = (("gateway", "POST", "/api/v1/orders"), ("order", "POST", "/api/v1/orders"),
        ("stock", "POST", '/holds"'))


async def _metrics(base_url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{base_url}/metrics") as response:
        return await response.text()


async def requests_answered(base_url: str, method: str, route_part: str) -> int:
    """How many `method` requests to routes containing `route_part` the service has answered
    (its /metrics)."""
    text = await _metrics(base_url)
    return sum(int(float(match["count"])) for match in _REQUESTS.finditer(text)
               if f'method="{method}"' in match["labels"] and route_part in match["labels"])


async def time_inside(base_url: str, method: str, route_part: str) -> tuple[float, float]:
    """(requests, seconds) the service has spent answering such requests so far, from the
    start of each request to its answer as the service's own frame measures it."""
    text = await _metrics(base_url)
    totals = {"sum": 0.0, "count": 0.0}
    for match in _DURATIONS.finditer(text):
        if f'method="{method}"' in match["labels"] and route_part in match["labels"]:
            totals[match["kind"]] += float(match["value"])
    return totals["count"], totals["sum"]


async def ledger(bench: SaleBench, product_id: int) -> tuple[int, int, int]:
    engine = create_async_engine(bench.databases["stock"])
    try:
        async with engine.connect() as conn:
            total, held, sold = (await conn.execute(text(
                "SELECT total, held, sold FROM stock_products WHERE product_id = :p"),
                {"p": product_id})).one()
    finally:
        await engine.dispose()
    return int(total), int(held), int(sold)


async def run(args: argparse.Namespace, bench: SaleBench, hello_url: str) -> None:
    print(f"making {args.buyers} buyers (bulk, no Argon2 or SMTP) ...", flush=True)
    buyers = await make_buyers(bench, args.buyers)
    hello = await measure("hello-world", hello_url, headers={}, connections=64, seconds=5)
    print(hello.line(), flush=True)
    # The raw rate of the reserve script straight on Redis, every call a winning hold.
    sha, raw_product = await redis_only_product()
    raw = await evalsha_rate("raw EVALSHA reserve", sha, raw_product, connections=64,
                             requests=100_000)
    print(raw.line(), flush=True)

    phases = [("all at the opening", 0.0), (f"{args.rate:,.0f} a second", args.rate)]
    for label, rate in phases:
        print(flush=True)
        result = await sale_phase(args, bench, buyers, rate=rate,
                                  profile=Path(args.profile) / f"{rate:g}-"
                                  if args.profile else None)
        result.report(f"{args.buyers} buyers, {label}, 1 unit each, stock {args.stock}, "
                      "through the gateway", hello=hello.rps, raw=raw.rps)
        winners = [(buyer, answer.order_id) for buyer, answer in zip(buyers, result.answers,
                                                                      strict=True)
                   if answer.order_id is not None]
        payments = await pay_all(bench, winners, result.product_id,
                                 connections=args.connections,
                                 profile=Path(args.profile) / f"{rate:g}-pay-"
                                 if args.profile else None)
        payments.report(f"the {len(winners)} winners pay at once (a card that succeeds), "
                        "through the gateway", hello=hello.rps)


@dataclass(frozen=True)
class Phase:
    answers: list[Answer]
    cpu: dict[str, float]
    reserve_calls: int
    ledger: tuple[int, int, int]
    rate: float
    # (requests, mean ms) inside each leg of LEGS during the phase.
    legs: dict[str, tuple[int, float]]
    # Commands each kind of datastore was sent during the phase (DatastoreCounters).
    calls: dict[str, int]
    product_id: int

    def report(self, title: str, *, hello: float, raw: float) -> None:
        answers = self.answers
        first = min(a.started for a in answers)
        last = max(a.ended for a in answers)
        decided = len([a for a in answers if a.status in (201, 409)])
        rate = decided / (last - first)
        latencies = sorted((a.ended - a.started) * 1000 for a in answers)
        p50 = statistics.median(latencies)
        p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
        total, held, sold = self.ledger
        oversold = max(0, held + sold - total)
        print(title)
        print(f"  order decisions: {rate:,.0f}/s over {last - first:.2f} s   p50 {p50:.0f} ms   "
              f"p99 {p99:.0f} ms")
        print("  answers:", dict(Counter(f"{a.status} {a.code}" for a in answers)))
        step = 0.25
        buckets: dict[int, Counter[int]] = {}
        for a in answers:
            buckets.setdefault(int((a.ended - first) / step), Counter())[a.status] += 1
        print(f"  201/409 answered per {step:g} s: " + "  ".join(
            f"{c[201]}/{c[409]}" for _, c in sorted(buckets.items())))
        print("  mean time inside each service per request (its own /metrics): " + ", ".join(
            f"{leg} {ms:.0f} ms over {count}" for leg, (count, ms) in self.legs.items()))
        print(f"  calls to reserve at stock_service: {self.reserve_calls} (each the reserves of "
              "one product asked at one moment; the rest refused by order_service's memory)")
        print(f"  ledger: total {total}, held {held}, sold {sold}, remaining "
              f"{total - held - sold}, oversold {oversold}")
        print(f"  ratios: decisions/hello-world {rate / hello:.3f}   "
              f"decisions/raw EVALSHA {rate / raw:.4f}")
        print(f"  per order: {self.calls['redis'] / len(answers):.1f} Redis commands "
              f"(exact: its own database's server), {self.calls['mysql'] / len(answers):.1f} "
              "MySQL statements (the server's count, less its rate in the quiet second before "
              "the opening: others share it)")
        print("  CPU ms per order: " + ", ".join(
            f"{name} {1000 * seconds / len(answers):.2f}"
            for name, seconds in sorted(self.cpu.items(), key=lambda i: -i[1])))
        if self.rate:
            met = (rate >= 0.97 * self.rate and p99 < GOAL_P99_MS and not oversold
                   and decided == len(answers))
            print(f"  goal {GOAL_DECISIONS_PER_SECOND:,}/s with p99 < {GOAL_P99_MS} ms and no "
                  f"oversell: {'met' if met else 'MISSED'}")


def replica_urls(bench: SaleBench, name: str) -> list[str]:
    """Where each replica of `name` serves GET /metrics."""
    return [metrics_url(p) for p in bench.replicas.get(name) or [
        bench.gateway if name == "gateway" else bench.processes[name]]]


async def reserve_calls_answered(bench: SaleBench) -> int:
    """Calls order_service made to reserve (each a batch of the reserves of one moment)."""
    return sum([await requests_answered(url, "POST", '/holds"')
                for url in replica_urls(bench, "stock")])


async def legs_inside(bench: SaleBench) -> list[tuple[float, float]]:
    """(requests, seconds) inside each leg of LEGS so far, summed over the leg's replicas."""
    legs = []
    for name, method, part in LEGS:
        inside = [await time_inside(url, method, part) for url in replica_urls(bench, name)]
        legs.append((sum(i[0] for i in inside), sum(i[1] for i in inside)))
    return legs


async def sale_phase(args: argparse.Namespace, bench: SaleBench, buyers: list[BulkAccount], *,
                     rate: float, profile: Path | None) -> Phase:
    reserve_calls_before = await reserve_calls_answered(bench)
    legs_before = await legs_inside(bench)
    sale: list[int] = []

    async def open_sale() -> tuple[int, float]:
        product_id, opens_at = await register_product(bench, stock=args.stock,
                                                      opens_in=args.lead)
        sale.append(product_id)
        return product_id, opens_at

    marks: dict[str, tuple[float, dict[str, int]]] = {}
    answers, used = await send_all(bench.gateway_url, buyers, connections=args.connections,
                                   rate=rate, open_sale=open_sale, pids=bench.pids(),
                                   profile=profile, hosts=bench.hosts, marks=marks)
    await asyncio.sleep(1)  # effects are after-commit: let them land before reading the ledger
    reserve_calls = await reserve_calls_answered(bench) - reserve_calls_before
    legs: dict[str, tuple[int, float]] = {}
    for (name, _, _), (count_before, seconds_before), (count, seconds) in zip(
            LEGS, legs_before, await legs_inside(bench), strict=True):
        count -= count_before
        legs[name] = (int(count), 1000 * (seconds - seconds_before) / count if count else 0.0)
    (quiet_at, quiet), (opened_at, opened), (done_at, done) = (
        marks["quiet"], marks["opened"], marks["done"])
    # MySQL is shared with whatever else runs here: its rate in the quiet second before the
    # opening (the buyers connected, nothing sent) is taken out.
    others = (opened["mysql"] - quiet["mysql"]) * (done_at - opened_at) / (opened_at - quiet_at)
    calls = {"redis": done["redis"] - opened["redis"],
             "mysql": max(0, round(done["mysql"] - opened["mysql"] - others))}
    return Phase(answers, used, reserve_calls, await ledger(bench, sale[0]), rate, legs, calls,
                 sale[0])


@dataclass(frozen=True)
class Payments:
    answers: list[Answer]
    cpu: dict[str, float]
    # The product's ledger once every succeeded payment's units were sold (or after 30 s).
    ledger: tuple[int, int, int]

    def report(self, title: str, *, hello: float) -> None:
        answers = self.answers
        if not answers:
            print(f"{title}: no winners to pay")
            return
        first = min(a.started for a in answers)
        last = max(a.ended for a in answers)
        latencies = sorted((a.ended - a.started) * 1000 for a in answers)
        p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
        rate = len(answers) / (last - first)
        succeeded = len([a for a in answers if a.status == 201 and a.code == "succeeded"])
        _total, held, sold = self.ledger
        print(title)
        print(f"  payments: {rate:,.0f}/s over {last - first:.2f} s   "
              f"p50 {statistics.median(latencies):.0f} ms   p99 {p99:.0f} ms   "
              f"ratio payments/hello-world {rate / hello:.3f}")
        print("  answers:", dict(Counter(f"{a.status} {a.code}" for a in answers)))
        print(f"  ledger: sold {sold} for {succeeded} payments succeeded, held {held}"
              f"{'' if sold == succeeded else '   MISMATCH'}")
        print(f"  CPU ms per payment (all processes {1000 * sum(self.cpu.values()) / len(answers):.2f}): "
              + ", ".join(f"{name} {1000 * seconds / len(answers):.2f}"
                          for name, seconds in sorted(self.cpu.items(), key=lambda i: -i[1])))


async def pay_all(bench: SaleBench, winners: list[tuple[BulkAccount, int]], product_id: int,
                  *, connections: int, profile: Path | None) -> Payments:
    """Every winner (answered 201) pays its order at once, through the gateway, on connections
    opened (and tokens seen) beforehand; the CPU each process used from the first payment until
    the ledger has sold a unit for every payment that succeeded (the order paid and its hold
    committed after the answer), or 30 s."""
    connector = aiohttp.TCPConnector(limit=connections, resolver=Resolver(bench.hosts))
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        url = bench.gateway_url
        await asyncio.gather(*(_warm(session, url, buyer) for buyer, _ in winners))
        pids = bench.pids()
        before = {name: cpu_seconds(pid) for name, pid in pids.items() if alive(pid)}
        recorders = await start_profiles(profile, pids, seconds=6)

        async def pay(buyer: BulkAccount, order_id: int) -> Answer:
            started = time.perf_counter()
            try:
                async with session.post(
                        f"{url}/api/v1/payments",
                        headers={"Authorization": f"Bearer {buyer.access_token}"},
                        json={"order_id": order_id, "card_number": CARD_OK}) as response:
                    body: Any = await response.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError) as error:
                return Answer(0, type(error).__name__, started, time.perf_counter())
            code = body.get("code") or body.get("status") if isinstance(body, dict) else ""
            return Answer(response.status, str(code), started, time.perf_counter())

        answers = await asyncio.gather(*(pay(buyer, order_id) for buyer, order_id in winners))
        succeeded = len([a for a in answers if a.status == 201 and a.code == "succeeded"])
        for _ in range(300):  # 30 s at most
            sold = await ledger(bench, product_id)
            if sold[2] >= succeeded:
                break
            await asyncio.sleep(0.1)
        used = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()
                if name in before and alive(pid)}
        for recorder in recorders:
            await recorder.wait()
        return Payments(answers, used, sold)



class DatastoreCounters:
    """Commands served so far: by the benchmark's Redis server (INFO commandstats, less the
    INFO itself), and by the MySQL server (Questions: statements from clients). Connected
    once, before the buyers warm up, so reading them costs a round trip and no connect (a
    slow read would let the buyers' idle connections time out before the opening)."""

    async def __aenter__(self) -> DatastoreCounters:
        self.redis: Any = Redis.from_url(BENCH_REDIS_URL)
        self.engine = create_async_engine(MYSQL_SERVER_URL, pool_size=1)
        self.mysql = await self.engine.connect()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.redis.aclose()
        await self.mysql.close()
        await self.engine.dispose()

    async def read(self) -> dict[str, int]:
        stats = await self.redis.info("commandstats")
        questions = (await self.mysql.execute(text("SHOW GLOBAL STATUS LIKE 'Questions'"))).one()
        return {"redis": sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info"),
                "mysql": int(questions[1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--buyers", type=int, default=2000)
    parser.add_argument("--stock", type=int, default=200)
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--rate", type=float, default=GOAL_DECISIONS_PER_SECOND,
                        help="buyers a second in the second phase (the first sends all at once)")
    parser.add_argument("--lead", type=float, default=1.5,
                        help="seconds from registering the product (after the warm-up) to its opening")
    parser.add_argument("--replicas", type=parse_replicas, default={},
                        help="processes of the gateway, order or stock, e.g. gateway=2,order=2")
    parser.add_argument("--profile", metavar="DIR", default=None,
                        help="record each phase under py-spy (raw) into DIR, a file a service")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-sale-"))
    print(f"services' logs in {workdir}")
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        hello_url = stack.enter_context(hello_world())
        bench = stack.enter_context(sale_bench(workdir, args.replicas))
        print(f"replicas: {args.replicas or 'one process each'}")
        asyncio.run(run(args, bench, hello_url))


if __name__ == "__main__":
    main()
