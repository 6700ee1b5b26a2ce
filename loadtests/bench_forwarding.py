"""Which HTTP client should the gateway forward with? The same minimal forwarder built on
httpx.AsyncClient and on aiohttp.ClientSession, each in front of the same trivial upstream,
measured side by side (alternating rounds) at the same concurrency.

    python -m loadtests.bench_forwarding [--concurrency 64] [--seconds 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from loadtests.load import LoadResult, run_load
from shared.testing.net import ServiceProcess

CANDIDATES = ("httpx_forwarder", "aiohttp_forwarder")


async def measure(args: argparse.Namespace, urls: dict[str, str]) -> None:
    for url in urls.values():
        await run_load("warm-up", f"{url}/item", headers={}, concurrency=args.concurrency, duration=1)
    best: dict[str, LoadResult] = {}
    for index in range(args.rounds):
        for name, url in urls.items():
            result = await run_load(f"{name} round {index + 1}", f"{url}/item", headers={},
                                    concurrency=args.concurrency, duration=args.seconds)
            print(result.line(), flush=True)
            if name not in best or result.rps > best[name].rps:
                best[name] = result
    print()
    print(f"forwarding GET /item, {args.concurrency} connections, best of {args.rounds} rounds")
    for result in best.values():
        print(result.line())
    httpx_rps, aiohttp_rps = (best[name].rps for name in urls)
    print(f"ratio aiohttp/httpx: {aiohttp_rps / httpx_rps:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="bench-forwarding-"))
    upstream = ServiceProcess("upstream", "loadtests.forwarders:upstream", env={}, log_dir=logs)
    forwarders: list[ServiceProcess] = []
    try:
        upstream.start().wait_healthy()
        for name in CANDIDATES:
            forwarder = ServiceProcess(name, f"loadtests.forwarders:{name}", log_dir=logs,
                                       env={"BENCH_UPSTREAM_URL": upstream.url})
            forwarders.append(forwarder.start())
        for forwarder in forwarders:
            forwarder.wait_healthy()
        asyncio.run(measure(args, {f.name: f.url for f in forwarders}))
    finally:
        for process in [*forwarders, upstream]:
            process.stop()


if __name__ == "__main__":
    main()
