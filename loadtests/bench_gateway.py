"""Gateway overhead: authenticated GET /api/v1/users/me through the gateway vs. straight to
user_service with X-User-Id, side by side in one run, at the same concurrency.

    python -m loadtests.bench_gateway [--concurrency 64] [--seconds 10] [--rounds 2]

It starts its own user_service and gateway (real uvicorn processes on loopback, a schema and
Redis database of their own, an SMTP sink for the sign-up code), signs a user up through the
gateway, then alternates direct and gateway rounds so machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import uuid
from pathlib import Path

import httpx

from loadtests.load import LoadResult, run_load
from shared.migrate import upgrade
from shared.testing.datastores import TEST_MYSQL_URL
from shared.testing.mail import MailSink
from shared.testing.net import ServiceProcess

BENCH_REDIS_URL = "redis://127.0.0.1:6379/14"


def bench_database_url() -> str:
    from sqlalchemy.engine import make_url

    url = make_url(TEST_MYSQL_URL).set(database="preorder_user_bench")
    return url.render_as_string(hide_password=False)


async def sign_in(gateway: str, mail: MailSink) -> tuple[str, int]:
    email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
    password = "correct horse battery staple"
    async with httpx.AsyncClient(base_url=gateway, timeout=10) as client:
        signup = await client.post("/api/v1/auth/signup",
                                   json={"email": email, "password": password, "name": "Bench"})
        signup.raise_for_status()
        code = (await mail.wait_for(email)).code
        (await client.post("/api/v1/auth/verify-email", json={"email": email, "code": code})
         ).raise_for_status()
        login = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
        login.raise_for_status()
        return login.json()["access_token"], int(signup.json()["id"])


def summarize(label: str, rounds: list[LoadResult]) -> LoadResult:
    best = max(rounds, key=lambda r: r.rps)
    return LoadResult(label, best.requests, sum(r.errors for r in rounds), best.seconds,
                      best.latencies_ms)


async def measure(args: argparse.Namespace, gateway: str, user: str, token: str,
                  user_id: int) -> None:
    direct_headers = {"X-User-Id": str(user_id)}
    gateway_headers = {"Authorization": f"Bearer {token}"}
    direct_url = f"{user}/api/v1/users/me"
    gateway_url = f"{gateway}/api/v1/users/me"
    # Warm pools, JIT-less caches and the JWKS before anything is counted.
    await run_load("warm-up", direct_url, headers=direct_headers, concurrency=args.concurrency,
                   duration=1.5)
    await run_load("warm-up", gateway_url, headers=gateway_headers, concurrency=args.concurrency,
                   duration=1.5)
    direct: list[LoadResult] = []
    through: list[LoadResult] = []
    for index in range(args.rounds):
        direct.append(await run_load(f"direct round {index + 1}", direct_url,
                                     headers=direct_headers, concurrency=args.concurrency,
                                     duration=args.seconds))
        print(direct[-1].line(), flush=True)
        through.append(await run_load(f"gateway round {index + 1}", gateway_url,
                                      headers=gateway_headers, concurrency=args.concurrency,
                                      duration=args.seconds))
        print(through[-1].line(), flush=True)
    best_direct = summarize("direct (best round)", direct)
    best_gateway = summarize("gateway (best round)", through)
    ratios = [g.rps / d.rps for d, g in zip(direct, through, strict=True) if d.rps]
    print()
    print(f"GET /api/v1/users/me, {args.concurrency} connections, {args.seconds:g} s x {args.rounds} rounds")
    print(best_direct.line())
    print(best_gateway.line())
    print(f"ratio gateway/direct: best {best_gateway.rps / best_direct.rps:.2f}, "
          f"per round {', '.join(f'{r:.2f}' for r in ratios)} (median {statistics.median(ratios):.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    database_url = bench_database_url()
    upgrade("user_service", database_url, drop_first=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    mail = MailSink().start()
    user = ServiceProcess("user_service", "user_service.app:create_app", log_dir=workdir, env={
        "LOG_LEVEL": "WARNING", "USER_DATABASE_URL": database_url, "USER_REDIS_URL": BENCH_REDIS_URL,
        "USER_JWT_KEY_DIR": str(workdir / "keys"), "SMTP_HOST": mail.host, "SMTP_PORT": str(mail.port),
    }).start()
    try:
        user.wait_healthy()
        gateway = ServiceProcess("gateway", "gateway.app:create_app", log_dir=workdir, env={
            "LOG_LEVEL": "WARNING", "GATEWAY_USER_SERVICE_URL": user.url,
            "GATEWAY_REDIS_URL": BENCH_REDIS_URL,
        }).start()
        try:
            gateway.wait_healthy()
            token, user_id = asyncio.run(sign_in(gateway.url, mail))
            asyncio.run(measure(args, gateway.url, user.url, token, user_id))
        finally:
            gateway.stop()
    finally:
        user.stop()
        mail.stop()


if __name__ == "__main__":
    main()
