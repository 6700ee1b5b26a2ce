"""Stock at the sale's opening, side by side in one run at the same concurrency:

1. a FastAPI hello-world on one uvicorn worker (the yardstick),
2. reserves on one product straight to stock_service's internal API (the Lua script, then the
   MySQL guard's transaction), each for a new order, with stock enough that every one wins,
3. sold-out answers from stock_service (a product with no stock: one Lua call, no MySQL),
4. the reserve script's raw EVALSHA rate straight on Redis (redis-benchmark, winning holds),
5. GET /api/v1/products/{id} through the gateway (product_service, detail from Redis),
6. GET /api/v1/products/{id}/stock through the gateway (stock_service, from Redis),
7. the same straight to stock_service (what the gateway's hop costs),
8. the hello-world with one Redis call: the same PUT body parsed and the reserve script sent
   once through redis-py, on the sold-out product (loadtests/hello.py): the best any route
   that makes one Redis round trip per answer can do here,

and each as a share of the hello-world. Goals: a sold-out answer at least 0.5 of the
hello-world, a public stock read through the gateway at least 0.4.

    python -m loadtests.bench_stock [--connections 64] [--seconds 8] [--rounds 2] [--profile DIR]

It starts its own user_service, stock_service, product_service and gateway on loopback, on
schemas of their own (preorder_*_bench, suffixed with TEST_NAMESPACE when set) and the Redis
database BENCH_REDIS_URL (default 14), creates the products through the gateway, alternates
the targets in rounds so machine noise hits all alike, and stops by itself. HTTP load comes
from wrk (the reserves from a wrk Lua script that gives every request its own order id).
With --profile, one more run of each goal's target is recorded with py-spy (stock_service
under sold-out load; the gateway and stock_service under stock reads), and the hottest frames
are printed; the raw profiles stay in DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis
from sqlalchemy.engine import make_url

from loadtests.load import LoadResult
from loadtests.signed import IDENTITY_ENVIRONMENT, presigned_script, sign
from loadtests.system import BENCH_REDIS_URL, BenchSystem, create_account, hello_world
from loadtests.wrk import measure
from shared.contracts import IDENTITY_MAX_AGE_SECONDS
from shared.internal.stock import hold_path
from shared.migrate import upgrade
from shared.testing.datastores import database_url_for_tests, forget_redis_keys
from shared.testing.identity import DEPLOYMENT_KEY, service_identity_headers
from shared.testing.mail import MailSink
from shared.testing.net import ServiceProcess
from stock_service.stock.scripts import REFUSAL_MEMORY_MS, RESERVE, ProductKeys

SOLD_OUT_GOAL = 0.5
STOCK_READ_GOAL = 0.4
# Every reserve of the run must win: far more units than the rounds can take.
HOT_STOCK = 100_000_000
# Order ids: each measured run starts past the last (wrk's LuaJIT prints numbers exactly below
# 10**14, which these stay under), each wrk thread a billion apart.
FIRST_ORDER_ID = 10**12
ORDERS_PER_RUN = 10**10

@dataclass(frozen=True)
class StockBench:
    gateway: ServiceProcess
    stock: ServiceProcess
    product: ServiceProcess
    system: BenchSystem
    # user_service's schema: the bench's seller is granted its role there.
    user_database_url: str


@contextmanager
def stock_system(workdir: Path) -> Iterator[StockBench]:
    os.environ["APP_ENV"] = "development"
    urls = {name: database_url_for_tests(f"preorder_{name}", "bench")
            for name in ("user", "stock", "product")}
    for name, url in urls.items():
        upgrade(f"{name}_service", url, drop_first=True)
    # Fresh schemas hand out the same product ids again: their live state goes too.
    for prefix in ("{p:", "stock:", "product:"):
        forget_redis_keys(BENCH_REDIS_URL, prefix)
    # Settings default to production; the migrations above read them too.
    identity_key = DEPLOYMENT_KEY
    quiet = {"APP_ENV": "development", "LOG_LEVEL": "WARNING", **IDENTITY_ENVIRONMENT}
    with ExitStack() as stack:
        mail = MailSink().start()
        stack.callback(mail.stop)

        def started(name: str, env: dict[str, str]) -> ServiceProcess:
            process = ServiceProcess(name, f"{name}.app:create_app", log_dir=workdir,
                                     env={**quiet, **env})
            stack.callback(process.stop)
            process.start().wait_healthy()
            return process

        user = started("user_service", {
            "USER_DATABASE_URL": urls["user"], "USER_REDIS_URL": BENCH_REDIS_URL,
            "USER_JWT_KEY_DIR": str(workdir / "keys"), "SMTP_HOST": mail.host,
            "SMTP_PORT": str(mail.port)})
        stock = started("stock_service", {
            "STOCK_DATABASE_URL": urls["stock"], "STOCK_REDIS_URL": BENCH_REDIS_URL})
        product = started("product_service", {
            "PRODUCT_DATABASE_URL": urls["product"], "PRODUCT_REDIS_URL": BENCH_REDIS_URL,
            "PRODUCT_STOCK_SERVICE_URL": stock.url})
        gateway = started("gateway", {
            "GATEWAY_REDIS_URL": BENCH_REDIS_URL, "GATEWAY_USER_SERVICE_URL": user.url,
            "GATEWAY_PRODUCT_SERVICE_URL": product.url, "GATEWAY_STOCK_SERVICE_URL": stock.url})
        yield StockBench(gateway, stock, product, BenchSystem(gateway.url, user.url, mail,
                                                                   identity_key), urls["user"])


async def create_products(bench: StockBench) -> dict[str, int]:
    """hot (every reserve wins), sold_out (no stock), raw (for EVALSHA), shown (for reads)."""
    account = await create_account(bench.system, seller_in=bench.user_database_url)
    headers = {"Authorization": f"Bearer {account.access_token}"}
    general = {"description": "bench", "price": 1_000, "kind": "general"}
    bodies = {
        "hot": {**general, "name": "hot", "stock": HOT_STOCK},
        "sold_out": {**general, "name": "sold out", "stock": 0},
        "raw": {**general, "name": "raw", "stock": 1_000_000_000},
        "shown": {**general, "name": "shown", "stock": 100, "kind": "preorder",
                  "sale_opens_at": "2099-01-01T00:00:00Z"},
    }
    ids: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=bench.gateway.url, timeout=10) as client:
        for name, body in bodies.items():
            response = await client.post("/api/v1/products", json=body, headers=headers)
            response.raise_for_status()
            ids[name] = int(response.json()["id"])
    return ids


async def check_answers(bench: StockBench, ids: dict[str, int]) -> None:
    """Each target answers what it is meant to measure before anything is counted."""
    body = b'{"user_id":1,"quantity":1}'
    key = bench.system.identity_key

    def signed(target: str) -> dict[str, str]:
        return {**as_a_service(key, "PUT", target, body), "Content-Type": "application/json"}

    async with httpx.AsyncClient(timeout=10) as client:
        won = await client.put(bench.stock.url + hold_path(ids["hot"], 1), content=body,
                               headers=signed(hold_path(ids["hot"], 1)))
        refused = await client.put(bench.stock.url + hold_path(ids["sold_out"], 2), content=body,
                                   headers=signed(hold_path(ids["sold_out"], 2)))
        product = await client.get(f"{bench.gateway.url}/api/v1/products/{ids['shown']}")
        stock = await client.get(f"{bench.gateway.url}/api/v1/products/{ids['shown']}/stock")
    assert won.status_code == 200, won.text
    assert (refused.status_code, refused.json()["code"]) == (409, "sold_out"), refused.text
    assert product.status_code == 200, product.text
    assert stock.json() == {"product_id": ids["shown"], "remaining": 100,
                            "sale_state": "scheduled"}, stock.text


def as_a_service(identity_key: str, method: str, target: str, body: bytes) -> dict[str, str]:
    """What shared.http signs an internal call with (internal routes answer nobody else), for
    one request."""
    return sign(service_identity_headers("order_service", identity_key), method=method,
                target=target, body=body, audience="stock_service")


def reserve_script(workdir: Path, product_id: int, base: int, count: int) -> Path:
    """A reserve per request, each for an order of its own, each signed (loadtests/signed.py)."""
    targets = [hold_path(product_id, base + n) for n in range(count)]
    bodies = [b'{"user_id":%d,"quantity":1}' % (n % 100_000 + 1) for n in range(count)]
    return presigned_script(workdir / f"reserve-{product_id}-{base}.lua", caller="order_service",
                            audience="stock_service", method="PUT", targets=targets,
                            bodies=bodies,
                            extra_headers='wrk.headers["Content-Type"] = "application/json"')


def static_reserve_script(workdir: Path, product_id: int, count: int) -> Path:
    """The same reserve (one order) over and over, each signed anew."""
    return presigned_script(workdir / f"reserve-static-{product_id}.lua", caller="order_service",
                            audience="stock_service", method="PUT",
                            targets=[hold_path(product_id, FIRST_ORDER_ID - 1)] * count,
                            body=b'{"user_id":1,"quantity":1}',
                            extra_headers='wrk.headers["Content-Type"] = "application/json"')


def answered(result: LoadResult, label: str) -> LoadResult:
    """Every answer counted, refusals included (wrk calls a 409 non-2xx)."""
    refusals = result.error_kinds.get("non-2xx", 0)
    kinds = {k: v for k, v in result.error_kinds.items() if k != "non-2xx"}
    return LoadResult(label, result.requests + refusals, sum(kinds.values()), result.seconds,
                      [], kinds, result.reported_percentiles)


_EVALSHA_RATE = re.compile(r"([\d.]+) requests per second")


async def evalsha_rate(label: str, sha: str, product_id: int, *, connections: int,
                       requests: int) -> LoadResult:
    """The reserve script straight on Redis: redis-benchmark sends EVALSHA with a random order
    id per call (`__rand_int__`), every one a win."""
    url = make_url(BENCH_REDIS_URL.replace("redis://", "mysql://"))
    host, port = url.host or "127.0.0.1", url.port or 6379
    if not host.startswith("127.") and host != "localhost":
        raise ValueError("load is only ever sent to loopback")
    keys = ProductKeys.of(product_id).all
    argv = ["redis-benchmark", "-h", host, "-p", str(port), "--dbnum", url.database or "0",
            "-c", str(connections), "-n", str(requests), "-r", "1000000000000", "-q",
            "EVALSHA", sha, str(len(keys)), *keys, "__rand_int__", "7", "1",
            str(REFUSAL_MEMORY_MS)]
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await process.communicate()
    text = output.decode(errors="replace")
    rates = _EVALSHA_RATE.findall(text)
    if process.returncode != 0 or not rates:
        raise RuntimeError(f"redis-benchmark failed:\n{text}")
    rate = float(rates[-1])
    return LoadResult(label, requests, 0, requests / rate, [])


@dataclass(frozen=True)
class Target:
    label: str
    url: str
    pid_names: tuple[str, ...] = ()
    reserve_product: int | None = None  # a wrk script of reserves on this product
    counts_refusals: bool = False
    one_order: bool = False  # every reserve for one order id, the request built once


class Runner:
    def __init__(self, args: argparse.Namespace, bench: StockBench, workdir: Path, sha: str,
                 raw_product: int) -> None:
        self.args = args
        self.bench = bench
        self.workdir = workdir
        self.sha = sha
        self.raw_product = raw_product
        self.next_base = FIRST_ORDER_ID
        self.evalsha_requests = 50_000
        self.fastest_reserve = 0.0

    def signatures_for(self, seconds: float) -> int:
        """How many requests a reserve run gets signatures for (each is taken once): as many
        as the fastest run so far could send, and then some."""
        return max(5_000, int(1.3 * self.fastest_reserve * seconds))

    async def run(self, target: Target, label: str, seconds: float) -> LoadResult:
        if target.label == "EVALSHA reserve":
            result = await evalsha_rate(label, self.sha, self.raw_product,
                                        connections=self.args.connections,
                                        requests=self.evalsha_requests)
            # Sized from the last run, so each takes about `seconds`.
            self.evalsha_requests = max(10_000, int(result.rps * seconds))
            return result
        script = None
        if target.reserve_product is not None and target.one_order:
            script = static_reserve_script(self.workdir, target.reserve_product,
                                           self.signatures_for(seconds))
        elif target.reserve_product is not None:
            script = reserve_script(self.workdir, target.reserve_product, self.next_base,
                                    self.signatures_for(seconds))
            self.next_base += ORDERS_PER_RUN
        result = await measure(label, target.url, headers={}, connections=self.args.connections,
                               seconds=seconds, script=script)
        if script is not None:
            self.fastest_reserve = max(self.fastest_reserve, result.rps)
        return answered(result, label) if target.counts_refusals else result


def summarize_profile(path: Path, top: int = 8) -> list[str]:
    """The frames that used the most CPU themselves, from py-spy's raw (collapsed) output."""
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        own[stack.split(";")[-1]] += int(count)
    return [f"    {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)] \
        if total else ["    (no samples)"]


async def profile(runner: Runner, target: Target, processes: dict[str, ServiceProcess],
                  directory: Path, seconds: float) -> None:
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        print("py-spy not found (pip install py-spy): no profile", flush=True)
        return
    recorders = []
    for name in target.pid_names:
        process = processes[name].process
        assert process is not None
        out = directory / f"{target.label.replace(' ', '_').replace('/', '')}-{name}.raw"
        recorders.append((name, out, await asyncio.create_subprocess_exec(
            spy, "record", "-p", str(process.pid), "-d", str(int(seconds)), "-r", "200",
            "-f", "raw", "-o", str(out), "--nonblocking",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)))
    result = await runner.run(target, f"{target.label} (profiled)", seconds)
    print(result.line(), flush=True)
    for name, out, recorder in recorders:
        await recorder.wait()
        print(f"  {name}: hottest frames (own CPU) under {target.label}")
        for line in summarize_profile(out) if out.exists() else ["    (no profile written)"]:
            print(line)


def best_of(label: str, rounds: list[LoadResult]) -> LoadResult:
    best = max(rounds, key=lambda r: r.rps)
    return LoadResult(label, best.requests, sum(r.errors for r in rounds), best.seconds,
                      best.latencies_ms, best.error_kinds, best.reported_percentiles)


async def run(args: argparse.Namespace, bench: StockBench, hello_url: str, evalsha_url: str,
              workdir: Path) -> None:
    ids = await create_products(bench)
    await check_answers(bench, ids)
    redis: Any = Redis.from_url(BENCH_REDIS_URL)
    try:
        sha = str(await redis.script_load(RESERVE))
    finally:
        await redis.aclose()
    gateway = bench.gateway.url
    targets = [
        Target("hello-world", hello_url),
        Target("reserve (wins)", bench.stock.url, ("stock",), reserve_product=ids["hot"]),
        Target("reserve (sold out)", bench.stock.url, ("stock",),
               reserve_product=ids["sold_out"], counts_refusals=True, one_order=True),
        Target("reserve (sold out, new order each)", bench.stock.url, ("stock",),
               reserve_product=ids["sold_out"], counts_refusals=True),
        Target("EVALSHA reserve", BENCH_REDIS_URL),
        Target("gateway GET product", f"{gateway}/api/v1/products/{ids['shown']}",
               ("gateway", "product")),
        Target("gateway GET stock", f"{gateway}/api/v1/products/{ids['shown']}/stock",
               ("gateway", "stock")),
        # The same read straight to stock_service: what the gateway's hop costs.
        Target("direct GET stock",
               f"{bench.stock.url}/api/v1/products/{ids['shown']}/stock", ("stock",)),
        Target("hello + one EVALSHA", evalsha_url, reserve_product=ids["sold_out"],
               counts_refusals=True, one_order=True),
    ]
    runner = Runner(args, bench, workdir, sha, ids["raw"])
    for target in targets:  # warm pools, caches and the JIT of nothing before anything counts
        await runner.run(target, "warm-up", 2)
    print(f"wrk, {args.connections} connections, {args.seconds:g} s x {args.rounds} rounds each; "
          "EVALSHA: redis-benchmark at the same connections", flush=True)
    results: dict[str, list[LoadResult]] = {target.label: [] for target in targets}
    for index in range(args.rounds):
        for target in targets:
            result = await runner.run(target, f"{target.label} r{index + 1}", args.seconds)
            results[target.label].append(result)
            print(result.line(), flush=True)
    print()
    hello = results["hello-world"]
    for label, rounds in results.items():
        ratios = [r.rps / h.rps for r, h in zip(rounds, hello, strict=True) if h.rps]
        print(f"{best_of(label + ' (best)', rounds).line()}   "
              f"/hello-world: {', '.join(f'{x:.2f}' for x in ratios)} "
              f"(median {statistics.median(ratios):.2f})")
    print()
    for label, goal in (("reserve (sold out)", SOLD_OUT_GOAL),
                        ("gateway GET stock", STOCK_READ_GOAL)):
        ratio = statistics.median(r.rps / h.rps for r, h in zip(results[label], hello,
                                                                   strict=True))
        verdict = "met" if ratio >= goal else "MISSED"
        print(f"goal {label} / hello-world >= {goal}: {ratio:.2f} ({verdict})")
    if args.profile:
        processes = {"gateway": bench.gateway, "stock": bench.stock, "product": bench.product}
        for target in targets:
            if target.label in ("reserve (sold out)", "gateway GET stock"):
                await profile(runner, target, processes, Path(args.profile), args.seconds)


@contextmanager
def hello_with_evalsha(workdir: Path) -> Iterator[str]:
    """loadtests.hello's one-Redis-call variant on one uvicorn worker; yields its base URL."""
    process = ServiceProcess("hello_evalsha", "loadtests.hello:create_evalsha_app",
                             log_dir=workdir, env={"HELLO_REDIS_URL": BENCH_REDIS_URL})
    try:
        process.start().wait_healthy_at("/hello")
        yield process.url
    finally:
        process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--profile", metavar="DIR", default=None,
                        help="record each goal's target once more under py-spy into DIR")
    args = parser.parse_args()
    if args.seconds > 2 * IDENTITY_MAX_AGE_SECONDS - 2:
        parser.error(f"--seconds above {2 * IDENTITY_MAX_AGE_SECONDS - 2} would outlive the "
                     "signature of the internal calls")
    workdir = Path(tempfile.mkdtemp(prefix="bench-stock-"))
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    with (hello_world() as hello_url, hello_with_evalsha(workdir) as evalsha_url,
          stock_system(workdir) as bench):
        asyncio.run(run(args, bench, hello_url, evalsha_url, workdir))


if __name__ == "__main__":
    main()
