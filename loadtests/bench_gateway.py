"""The frame's cost, side by side in one run at the same concurrency:

1. a FastAPI hello-world on one uvicorn worker (the yardstick),
2. GET /api/v1/users/me straight to user_service (with the identity headers the gateway would
   send, signed with its key for each request: services believe no other, and each signature
   once; loadtests/signed.py),
3. the same through the gateway with a bearer token,

and the ratios direct/hello-world and gateway/direct, beside the CPU time each process spent per
request in each round (from /proc; on a machine busy with other work that moves far less than a
rate does). A leg with any answer but a 2xx measured something else (refusals): then the bench
prints no ratio and exits 1.

    python -m loadtests.bench_gateway [--connections 64] [--seconds 10] [--rounds 3]

With --tracing it measures instead what tracing costs (shared/tracing.py), side by side with
the hello-world: the same authenticated GET /api/v1/users/me through three gateway and
user_service pairs, one with tracing off, two exporting every span to an OTLP receiver in this
process with the sampler at 1.0 and at 0.01 (parentbased_traceidratio, as an operator sets
OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG). Beside the rates it prints the CPU time
the gateway and user_service spent per request in each round (from /proc): on a machine busy
with other work that moves far less than a rate does.

With --sold-out it measures instead the crowd's most common request at an opening, a
`POST /api/v1/orders` for a sold-out product, side by side with the hello-world:

1. through the gateway that heard stock_service's answer for it (given at the edge),
2. through a second gateway on the same services that hears no answers (another
   PUBSUB_PREFIX): forwarded, and refused by order_service's own sold-out memory (the path
   every such request took before the edge answered it).

It starts its own processes (loadtests/system.py), signs a user up through the gateway, then
alternates the three in rounds so machine noise hits all alike. Load comes from wrk when it is
installed (Debian package wrk), else from the project's aiohttp generator.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt

from loadtests.load import LoadResult
from loadtests.signed import presigned_script
from loadtests.system import (
    BENCH_REDIS_URL,
    BenchSystem,
    bench_system,
    cpu_seconds,
    create_account,
    hello_world,
    hello_world_process,
    service_system,
    with_metrics_port,
)
from loadtests.wrk import generator_name, measure
from shared.contracts import IDENTITY_MAX_AGE_SECONDS
from shared.testing.datastores import forget_redis_keys
from shared.testing.mail import MailSink
from shared.testing.net import ServiceProcess
from shared.testing.otlp import SpanCollector


def best_of(label: str, rounds: list[LoadResult]) -> LoadResult:
    best = max(rounds, key=lambda r: r.rps)
    return LoadResult(label, best.requests, sum(r.errors for r in rounds), best.seconds,
                      best.latencies_ms, best.error_kinds, best.reported_percentiles)


def ratios(numerators: list[LoadResult], denominators: list[LoadResult]) -> list[float]:
    return [n.rps / d.rps for n, d in zip(numerators, denominators, strict=True) if d.rps]


def describe(name: str, values: list[float]) -> str:
    return (f"{name}: per round {', '.join(f'{v:.2f}' for v in values)} "
            f"(median {statistics.median(values):.2f})")


def refusals(results: Mapping[str, list[LoadResult]]) -> list[str]:
    """Why the bench prints no ratio: each leg whose rounds had any answer but a 2xx (or a
    socket error). A ratio over them would measure refusals, as the direct leg's did while it
    replayed signatures the service takes once."""
    found = []
    for label, rounds in results.items():
        kinds: Counter[str] = Counter()
        for result in rounds:
            kinds.update(result.error_kinds)
        if kinds:
            found.append(f"{label}: " + ", ".join(f"{count:,} {kind}"
                                                  for kind, count in sorted(kinds.items())))
    return found


def refuse_ratios_after_errors(results: Mapping[str, list[LoadResult]]) -> None:
    if found := refusals(results):
        print("\nno ratios: a leg had answers other than 2xx, so it did not measure what it "
              "names:\n  " + "\n  ".join(found), flush=True)
        raise SystemExit(1)


@dataclass(frozen=True)
class Leg:
    url: str
    headers: dict[str, str]
    # Whose CPU is counted per request: name -> pid.
    processes: dict[str, int]
    # The wrk script for a round of so many seconds (None: the same request throughout).
    script: Callable[[float], Path] | None = None


def direct_signatures(results: list[LoadResult], warm_up: LoadResult | None,
                      seconds: float) -> int:
    """How many signed requests to make for a direct round of `seconds`: half again as many
    as the fastest round so far answered (the warm-up's answers counted whole, refusals too:
    a first guess errs high). Too few, and the round's last requests are replays (401)."""
    rates = [r.rps for r in results]
    if warm_up is not None and warm_up.seconds:
        rates.append((warm_up.requests + warm_up.errors) / warm_up.seconds)
    fastest = max(rates, default=0.0)
    return max(DIRECT_REQUESTS_AT_LEAST, int(1.5 * fastest * seconds))


async def run(args: argparse.Namespace, system: BenchSystem, hello: ServiceProcess) -> None:
    account = await create_account(system)
    session_id = jwt.decode(account.access_token, options={"verify_signature": False})["sid"]
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    gateway_pid, user_pid = system.pids
    assert hello.process is not None
    direct_warm_up: LoadResult | None = None
    results: dict[str, list[LoadResult]] = {}

    def as_the_gateway(seconds: float) -> Path:
        # One signature per request, made before the round (a service takes each once), dated
        # along the round so that the last are as fresh as the first.
        count = direct_signatures(results.get("direct /users/me", []), direct_warm_up, seconds)
        return presigned_script(
            workdir / "direct.lua", caller="gateway", audience="user_service", method="GET",
            targets=["/api/v1/users/me"] * count, user_id=str(account.user_id),
            session_id=session_id, spread_seconds=seconds,
            extra_headers=(f'wrk.headers["X-User-Id"] = "{account.user_id}"\n'
                           f'wrk.headers["X-Session-Id"] = "{session_id}"'))

    legs = {
        "hello-world": Leg(hello.url + "/hello", {}, {"hello": hello.process.pid}),
        "direct /users/me": Leg(f"{system.user_url}/api/v1/users/me", {},
                                {"user_service": user_pid}, as_the_gateway),
        "gateway /users/me": Leg(f"{system.gateway_url}/api/v1/users/me",
                                 {"Authorization": f"Bearer {account.access_token}"},
                                 {"gateway": gateway_pid, "user_service": user_pid}),
    }
    for label, leg in legs.items():  # warm pools and caches before anything counts
        warm = await measure("warm-up", leg.url, headers=leg.headers,
                             connections=args.connections, seconds=2,
                             script=leg.script(2) if leg.script else None)
        if label == "direct /users/me":
            direct_warm_up = warm
    results = {label: [] for label in legs}
    cpu_us: dict[str, dict[str, list[float]]] = {
        label: {name: [] for name in leg.processes} for label, leg in legs.items()}
    print(f"load generator: {generator_name()}; {args.connections} connections, "
          f"{args.seconds:g} s x {args.rounds} rounds each", flush=True)
    for index in range(args.rounds):
        for label, leg in legs.items():
            script = leg.script(args.seconds) if leg.script else None
            before = {name: cpu_seconds(pid) for name, pid in leg.processes.items()}
            result = await measure(f"{label} r{index + 1}", leg.url, headers=leg.headers,
                                   connections=args.connections, seconds=args.seconds,
                                   script=script)
            results[label].append(result)
            spent = []
            for name, pid in leg.processes.items():
                per_request = ((cpu_seconds(pid) - before[name]) * 1e6 / result.requests
                               if result.requests else float("nan"))
                cpu_us[label][name].append(per_request)
                spent.append(f"{name} {per_request:.0f}")
            print(f"{result.line()}   cpu us/request: {', '.join(spent)}", flush=True)
    print()
    for label, rounds in results.items():
        print(best_of(f"{label} (best)", rounds).line())
    for label, by_process in cpu_us.items():
        for name, per_round in by_process.items():
            print(f"cpu per request, {label:<18} {name:<13}: per round "
                  f"{', '.join(f'{v:.0f}' for v in per_round)} us "
                  f"(median {statistics.median(per_round):.0f})")
    refuse_ratios_after_errors(results)
    hello_rounds, direct, gateway = results.values()
    print(describe("ratio direct/hello-world ", ratios(direct, hello_rounds)))
    print(describe("ratio gateway/direct     ", ratios(gateway, direct)))
    print(describe("ratio gateway/hello-world", ratios(gateway, hello_rounds)))


# Signatures made for a direct round at the least (loadtests/signed.py).
DIRECT_REQUESTS_AT_LEAST = 5_000


# The label of each traced system and its sampler ratio (None: tracing off).
TRACING_SAMPLERS: dict[str, float | None] = {"off": None, "on, sampler 1.0": 1.0,
                                             "on, sampler 0.01": 0.01}


def tracing_env(collector: SpanCollector, ratio: float | None) -> dict[str, str]:
    if ratio is None:
        return {}
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": str(ratio)}


async def run_tracing(args: argparse.Namespace, systems: dict[str, BenchSystem],
                      hello_url: str, collector: SpanCollector) -> None:
    tokens = {label: (await create_account(system)).access_token
              for label, system in systems.items()}
    targets: dict[str, tuple[str, dict[str, str]]] = {"hello-world": (hello_url, {})}
    for label, system in systems.items():
        targets[f"tracing {label}"] = (f"{system.gateway_url}/api/v1/users/me",
                                       {"Authorization": f"Bearer {tokens[label]}"})
    for url, headers in targets.values():
        await measure("warm-up", url, headers=headers, connections=args.connections, seconds=2)
    results: dict[str, list[LoadResult]] = {label: [] for label in targets}
    cpu_ms: dict[str, list[float]] = {label: [] for label in systems}
    print(f"load generator: {generator_name()}; {args.connections} connections, "
          f"{args.seconds:g} s x {args.rounds} rounds each; GET /api/v1/users/me through "
          "the gateway", flush=True)
    for index in range(args.rounds):
        for label, (url, headers) in targets.items():
            pair = systems.get(label.removeprefix("tracing "))
            before = sum(cpu_seconds(pid) for pid in pair.pids) if pair else 0.0
            result = await measure(f"{label} r{index + 1}", url, headers=headers,
                                   connections=args.connections, seconds=args.seconds)
            results[label].append(result)
            line = result.line()
            if pair is not None and result.requests:
                used = sum(cpu_seconds(pid) for pid in pair.pids) - before
                cpu_ms[label.removeprefix("tracing ")].append(used * 1000 / result.requests)
                line += f"   cpu {cpu_ms[label.removeprefix('tracing ')][-1]:.3f} ms/request"
            print(line, flush=True)
    hello = results["hello-world"]
    off = results["tracing off"]
    print()
    for label, rounds in results.items():
        print(best_of(f"{label} (best)", rounds).line())
    refuse_ratios_after_errors(results)
    for label in systems:
        print(describe(f"ratio tracing {label:<16}/hello-world", ratios(results[f"tracing {label}"],
                                                                         hello)))
    for label in list(systems)[1:]:
        print(describe(f"ratio tracing {label:<16}/off        ",
                       ratios(results[f"tracing {label}"], off)))
    for label, per_round in cpu_ms.items():
        print(f"cpu per request, gateway + user_service, tracing {label:<16}: per round "
              f"{', '.join(f'{v:.3f}' for v in per_round)} ms "
              f"(median {statistics.median(per_round):.3f})")
    print(f"the receiver took {collector.exports} exports, {collector.received_bytes:,} bytes")


SOLD_OUT_GOAL = 0.5
ORDER_SCRIPT = """
wrk.method = "POST"
wrk.body = '{{"product_id":{product_id},"quantity":1}}'
wrk.headers["Content-Type"] = "application/json"
"""


@dataclass(frozen=True)
class SoldOutBench:
    system: BenchSystem
    # The same services behind a gateway that hears no edge answers.
    forwarding_url: str
    # user_service's schema: the bench's seller is granted its role there.
    user_database_url: str


def forwarding_env(gateway_env: Mapping[str, str]) -> dict[str, str]:
    """The second gateway's environment: the first's, hearing no edge answers (another
    PUBSUB_PREFIX) and with an internal metrics listener of its own (the first's port is
    taken)."""
    return with_metrics_port({**gateway_env, "PUBSUB_PREFIX": "bench-deaf:"})


@contextmanager
def sold_out_system(workdir: Path) -> Iterator[SoldOutBench]:
    # Fresh schemas hand out the same ids again: their live state goes too.
    for prefix in ("{p:", "stock:", "product:", "order", "bench-"):
        forget_redis_keys(BENCH_REDIS_URL, prefix)
    mail = MailSink().start()
    try:
        with service_system(["user", "product", "stock", "order", "payment"], workdir,
                            redis_url=BENCH_REDIS_URL, schema_suffix="bench",
                            env={"SMTP_HOST": mail.host, "SMTP_PORT": str(mail.port),
                                 "PUBSUB_PREFIX": "bench-edge:",
                                 # One buyer's token for every request: the per-user and
                                 # per-network limits would answer 429 instead.
                                 "GATEWAY_RATE_LIMIT_PER_USER": "0",
                                 "GATEWAY_RATE_LIMIT_PER_NETWORK": "0"}) as services:
            forwarding = ServiceProcess(
                "gateway-forwarding", "gateway.app:create_app", log_dir=workdir,
                env=forwarding_env(services.gateway.env))
            try:
                forwarding.start().wait_healthy()
                yield SoldOutBench(
                    BenchSystem(services.gateway.url, services.processes["user"].url, mail,
                                services.identity_key),
                    forwarding.url, services.databases["user"])
            finally:
                forwarding.stop()
    finally:
        mail.stop()


async def sold_out_product(bench: SoldOutBench, token: str) -> int:
    """A general product with no stock, and both gateways answering 409 sold_out for it."""
    headers = {"Authorization": f"Bearer {token}"}
    body = {"name": "sold out", "description": "bench", "price": 1_000, "stock": 0,
            "kind": "general"}
    async with httpx.AsyncClient(timeout=10) as client:
        created = await client.post(f"{bench.system.gateway_url}/api/v1/products", json=body,
                                    headers=headers)
        created.raise_for_status()
        product_id = int(created.json()["id"])
        for url in (bench.system.gateway_url, bench.forwarding_url):
            refused = await client.post(f"{url}/api/v1/orders", headers=headers,
                                        json={"product_id": product_id, "quantity": 1})
            assert (refused.status_code, refused.json()["code"]) == (409, "sold_out"), \
                refused.text
    return product_id


async def sold_out_product_check(bench: SoldOutBench, auth: dict[str, str],
                                 product_id: int) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for url in (bench.system.gateway_url, bench.forwarding_url):
            refused = await client.post(f"{url}/api/v1/orders", headers=auth,
                                        json={"product_id": product_id, "quantity": 1})
            assert (refused.status_code, refused.json()["code"]) == (409, "sold_out"), \
                refused.text


def every_answer(result: LoadResult, label: str) -> LoadResult:
    """Every answer counted, refusals included (wrk calls a 409 non-2xx)."""
    refusals = result.error_kinds.get("non-2xx", 0)
    kinds = {k: v for k, v in result.error_kinds.items() if k != "non-2xx"}
    return LoadResult(label, result.requests + refusals, sum(kinds.values()), result.seconds,
                      [], kinds, result.reported_percentiles)


async def run_sold_out(args: argparse.Namespace, bench: SoldOutBench, hello_url: str,
                       workdir: Path) -> None:
    account = await create_account(bench.system, seller_in=bench.user_database_url)
    product_id = await sold_out_product(bench, account.access_token)
    script = workdir / "sold-out-order.lua"
    script.write_text(ORDER_SCRIPT.format(product_id=product_id))
    auth = {"Authorization": f"Bearer {account.access_token}"}
    targets: dict[str, tuple[str, dict[str, str], Path | None]] = {
        "hello-world": (hello_url, {}, None),
        "sold out, at the edge": (f"{bench.system.gateway_url}/api/v1/orders", auth, script),
        "sold out, forwarded": (f"{bench.forwarding_url}/api/v1/orders", auth, script),
    }
    for url, headers, lua in targets.values():
        await measure("warm-up", url, headers=headers, connections=args.connections,
                      seconds=2, script=lua)
    results: dict[str, list[LoadResult]] = {label: [] for label in targets}
    print(f"load generator: {generator_name()}; {args.connections} connections, "
          f"{args.seconds:g} s x {args.rounds} rounds each", flush=True)
    for index in range(args.rounds):
        for label, (url, headers, lua) in targets.items():
            result = every_answer(await measure(
                f"{label} r{index + 1}", url, headers=headers, connections=args.connections,
                seconds=args.seconds, script=lua), f"{label} r{index + 1}")
            results[label].append(result)
            print(result.line(), flush=True)
    # Still the answer measured (wrk counts every non-2xx alike).
    await sold_out_product_check(bench, auth, product_id)
    hello, edge, forwarded = results.values()
    print()
    for label, rounds in results.items():
        print(best_of(f"{label} (best)", rounds).line())
    refuse_ratios_after_errors(results)
    print(describe("ratio at the edge/hello-world", ratios(edge, hello)))
    print(describe("ratio forwarded/hello-world  ", ratios(forwarded, hello)))
    print(f"goal: at the edge >= {SOLD_OUT_GOAL} of the hello-world")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tracing", action="store_true",
                        help="GET /api/v1/users/me through the gateway with tracing off and on "
                             "(sampler 1.0 and 0.01), beside the hello-world")
    parser.add_argument("--sold-out", action="store_true",
                        help="POST /api/v1/orders for a sold-out product, at the edge and "
                             "forwarded, beside the hello-world")
    args = parser.parse_args()
    if args.seconds > 2 * IDENTITY_MAX_AGE_SECONDS - 2:
        parser.error(f"--seconds above {2 * IDENTITY_MAX_AGE_SECONDS - 2} would outlive the "
                     "direct round's identity signature")
    if args.tracing:
        collector = SpanCollector(keep=False).start()
        try:
            with hello_world() as hello_url, contextlib.ExitStack() as stack:
                systems = {label: stack.enter_context(bench_system(
                    suffix=f"bench{index}", env=tracing_env(collector, ratio)))
                    for index, (label, ratio) in enumerate(TRACING_SAMPLERS.items())}
                asyncio.run(run_tracing(args, systems, hello_url, collector))
        finally:
            collector.stop()
        return
    if args.sold_out:
        workdir = Path(tempfile.mkdtemp(prefix="bench-"))
        with hello_world() as hello_url, sold_out_system(workdir) as bench:
            asyncio.run(run_sold_out(args, bench, hello_url, workdir))
        return
    with hello_world_process() as hello, bench_system() as system:
        asyncio.run(run(args, system, hello))


if __name__ == "__main__":
    main()
