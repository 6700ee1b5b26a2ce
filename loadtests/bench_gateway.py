"""The frame's cost, side by side in one run at the same concurrency:

1. a FastAPI hello-world on one uvicorn worker (the yardstick),
2. GET /api/v1/users/me straight to user_service (with the identity headers the gateway would
   send, signed with its key: services believe no other),
3. the same through the gateway with a bearer token,

and the ratios direct/hello-world and gateway/direct.

    python -m loadtests.bench_gateway [--connections 64] [--seconds 10] [--rounds 3]

It starts its own processes (loadtests/system.py), signs a user up through the gateway, then
alternates the three in rounds so machine noise hits all alike. Load comes from wrk when it is
installed (Debian package wrk), else from the project's aiohttp generator.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

import jwt

from loadtests.load import LoadResult
from loadtests.system import BenchSystem, bench_system, create_account, hello_world
from loadtests.wrk import generator_name, measure
from shared.contracts import IDENTITY_MAX_AGE_SECONDS
from shared.testing.identity import signed_identity_headers


def best_of(label: str, rounds: list[LoadResult]) -> LoadResult:
    best = max(rounds, key=lambda r: r.rps)
    return LoadResult(label, best.requests, sum(r.errors for r in rounds), best.seconds,
                      best.latencies_ms, best.error_kinds, best.reported_percentiles)


def ratios(numerators: list[LoadResult], denominators: list[LoadResult]) -> list[float]:
    return [n.rps / d.rps for n, d in zip(numerators, denominators, strict=True) if d.rps]


def describe(name: str, values: list[float]) -> str:
    return (f"{name}: per round {', '.join(f'{v:.2f}' for v in values)} "
            f"(median {statistics.median(values):.2f})")


async def run(args: argparse.Namespace, system: BenchSystem, hello_url: str) -> None:
    account = await create_account(system)
    session_id = jwt.decode(account.access_token, options={"verify_signature": False})["sid"]

    def as_the_gateway() -> dict[str, str]:
        # wrk sends the same headers for a whole round, and a signature is believed for
        # IDENTITY_MAX_AGE_SECONDS either side of its time: dated that far ahead (less a
        # second), one signature covers a round of up to twice as long.
        ahead = int(time.time()) + IDENTITY_MAX_AGE_SECONDS - 1
        return signed_identity_headers(account.user_id, session_id, system.identity_key,
                                       timestamp=ahead)

    targets: dict[str, tuple[str, Callable[[], dict[str, str]]]] = {
        "hello-world": (hello_url, dict),
        "direct /users/me": (f"{system.user_url}/api/v1/users/me", as_the_gateway),
        "gateway /users/me": (f"{system.gateway_url}/api/v1/users/me",
                              lambda: {"Authorization": f"Bearer {account.access_token}"}),
    }
    for url, headers in targets.values():  # warm pools and caches before anything counts
        await measure("warm-up", url, headers=headers(), connections=args.connections,
                      seconds=2)
    results: dict[str, list[LoadResult]] = {label: [] for label in targets}
    print(f"load generator: {generator_name()}; {args.connections} connections, "
          f"{args.seconds:g} s x {args.rounds} rounds each", flush=True)
    for index in range(args.rounds):
        for label, (url, headers) in targets.items():
            result = await measure(f"{label} r{index + 1}", url, headers=headers(),
                                   connections=args.connections, seconds=args.seconds)
            results[label].append(result)
            print(result.line(), flush=True)
    hello, direct, gateway = results.values()
    print()
    for label, rounds in results.items():
        print(best_of(f"{label} (best)", rounds).line())
    print(describe("ratio direct/hello-world ", ratios(direct, hello)))
    print(describe("ratio gateway/direct     ", ratios(gateway, direct)))
    print(describe("ratio gateway/hello-world", ratios(gateway, hello)))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.seconds > 2 * IDENTITY_MAX_AGE_SECONDS - 2:
        parser.error(f"--seconds above {2 * IDENTITY_MAX_AGE_SECONDS - 2} would outlive the "
                     "direct round's identity signature")
    with hello_world() as hello_url, bench_system() as system:
        asyncio.run(run(args, system, hello_url))


if __name__ == "__main__":
    main()
