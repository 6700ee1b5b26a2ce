"""Gateway overhead: authenticated GET /api/v1/users/me through the gateway vs. straight to
user_service with X-User-Id, side by side in one run, at the same concurrency.

    python -m loadtests.bench_gateway [--concurrency 64] [--seconds 10] [--rounds 3]

It starts its own user_service and gateway (loadtests/system.py), signs a user up through the
gateway, then alternates direct and gateway rounds so machine noise hits both alike, and
prints each round, the best of each, and the gateway/direct ratio per round.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from loadtests.load import LoadResult, run_load
from loadtests.system import BenchSystem, bench_system, create_account


def best_of(label: str, rounds: list[LoadResult]) -> LoadResult:
    best = max(rounds, key=lambda r: r.rps)
    return LoadResult(label, best.requests, sum(r.errors for r in rounds), best.seconds,
                      best.latencies_ms)


async def measure(args: argparse.Namespace, system: BenchSystem) -> None:
    account = await create_account(system)
    direct = (f"{system.user_url}/api/v1/users/me", {"X-User-Id": str(account.user_id)})
    through = (f"{system.gateway_url}/api/v1/users/me",
               {"Authorization": f"Bearer {account.access_token}"})
    for url, headers in (direct, through):  # warm pools and caches before anything counts
        await run_load("warm-up", url, headers=headers, concurrency=args.concurrency, duration=1.5)
    direct_rounds: list[LoadResult] = []
    gateway_rounds: list[LoadResult] = []
    for index in range(args.rounds):
        for label, (url, headers), results in (("direct", direct, direct_rounds),
                                               ("gateway", through, gateway_rounds)):
            results.append(await run_load(f"{label} round {index + 1}", url, headers=headers,
                                          concurrency=args.concurrency, duration=args.seconds))
            print(results[-1].line(), flush=True)
    best_direct = best_of("direct (best round)", direct_rounds)
    best_gateway = best_of("gateway (best round)", gateway_rounds)
    ratios = [g.rps / d.rps for d, g in zip(direct_rounds, gateway_rounds, strict=True) if d.rps]
    print()
    print(f"GET /api/v1/users/me, {args.concurrency} connections, "
          f"{args.seconds:g} s x {args.rounds} rounds each")
    print(best_direct.line())
    print(best_gateway.line())
    print(f"ratio gateway/direct: best-to-best {best_gateway.rps / best_direct.rps:.2f}; "
          f"per round {', '.join(f'{r:.2f}' for r in ratios)} (median {statistics.median(ratios):.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with bench_system() as system:
        asyncio.run(measure(args, system))


if __name__ == "__main__":
    main()
