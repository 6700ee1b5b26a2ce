"""Login throughput through the gateway: POST /api/v1/auth/login with a correct password, which
costs one Argon2id verify (m=19 MiB, t=2, p=1, in user_service's hashing thread pool), a session
row and a refresh token. Each connection logs in as its own account, as a crowd would.

    python -m loadtests.bench_login [--concurrency 32] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio

from loadtests.load import run_load
from loadtests.system import PASSWORD, BenchSystem, bench_system, create_account


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    async def measure(system: BenchSystem) -> None:
        accounts = await asyncio.gather(*(create_account(system) for _ in range(args.concurrency)))
        bodies = [{"email": account.email, "password": PASSWORD} for account in accounts]
        result = await run_load("login through gateway", f"{system.gateway_url}/api/v1/auth/login",
                                method="POST", json_bodies=bodies, headers={},
                                concurrency=args.concurrency, duration=args.seconds)
        print(f"POST /api/v1/auth/login, {args.concurrency} connections, {args.seconds:g} s")
        print(result.line())

    with bench_system() as system:
        asyncio.run(measure(system))


if __name__ == "__main__":
    main()
