"""Newsfeed latency: one user following 1,000 users who wrote 100,000 posts between them,
read through the gateway at 32 connections. Side by side in one run, alternating rounds:
the first feed page, page 50, and a single post (GET /api/v1/posts/{id}).

    python -m loadtests.bench_feed [--concurrency 32] [--seconds 10] [--rounds 2]

Goal: the first feed page's p99 at most three times the single post's. It starts its own
user_service, social_service and gateway on loopback with schemas of their own
(preorder_*_feedbench, suffixed with TEST_NAMESPACE when set) and Redis database 10
(BENCH_FEED_REDIS_URL), seeds the posts straight into MySQL, and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
from redis.asyncio import Redis
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import create_async_engine

from loadtests.load import LoadResult, run_load
from loadtests.signed import IDENTITY_ENVIRONMENT
from loadtests.system import BenchSystem, create_account
from shared.clock import utcnow
from shared.migrate import upgrade
from shared.testing.datastores import database_url_for_tests
from shared.testing.identity import DEPLOYMENT_KEY
from shared.testing.mail import MailSink
from shared.testing.net import ServiceProcess
from social_service.follows.models import Follow, FollowCounts
from social_service.posts.models import Post

REDIS_URL = os.environ.get("BENCH_FEED_REDIS_URL", "redis://127.0.0.1:6379/10")
FOLLOWED = 1_000
POSTS = 100_000
PAGE = 20
DEEP_PAGE = 50
# Far above the ids user_service hands out, so the seeded authors never meet a real account.
FIRST_AUTHOR_ID = 10**12


@contextmanager
def feed_system(workdir: Path) -> Iterator[tuple[BenchSystem, str]]:
    """(the system, social_service's database URL)."""
    user_db = database_url_for_tests("preorder_user", "feedbench")
    social_db = database_url_for_tests("preorder_social", "feedbench")
    # Settings default to production; the migrations here read them too.
    os.environ["APP_ENV"] = "development"
    upgrade("user_service", user_db, drop_first=True)
    upgrade("social_service", social_db, drop_first=True)
    mail = MailSink().start()
    identity_key = DEPLOYMENT_KEY
    quiet = {"APP_ENV": "development", "LOG_LEVEL": "WARNING", **IDENTITY_ENVIRONMENT}
    user = ServiceProcess("user_service", "user_service.app:create_app", log_dir=workdir, env={
        **quiet, "USER_DATABASE_URL": user_db, "USER_REDIS_URL": REDIS_URL,
        "USER_JWT_KEY_DIR": str(workdir / "keys"), "SMTP_HOST": mail.host,
        "SMTP_PORT": str(mail.port),
    })
    social = ServiceProcess("social_service", "social_service.app:create_app", log_dir=workdir,
                            env={**quiet, "SOCIAL_DATABASE_URL": social_db,
                                 "SOCIAL_REDIS_URL": REDIS_URL,
                                 "SOCIAL_USER_SERVICE_URL": user.url})
    gateway = ServiceProcess("gateway", "gateway.app:create_app", log_dir=workdir, env={
        **quiet, "GATEWAY_USER_SERVICE_URL": user.url, "GATEWAY_SOCIAL_SERVICE_URL": social.url,
        "GATEWAY_REDIS_URL": REDIS_URL,
    })
    started: list[ServiceProcess] = []
    try:
        for process in (user, social, gateway):
            started.append(process.start())
            process.wait_healthy()
        yield BenchSystem(gateway.url, user.url, mail, identity_key), social_db
    finally:
        for process in reversed(started):
            process.stop()
        mail.stop()


async def seed(database_url: str, reader_id: int) -> int:
    """The reader follows FOLLOWED authors who wrote POSTS posts over the last 30 days; returns
    one of the posts (for the single-post reads)."""
    engine = create_async_engine(database_url)
    rng = random.Random(7)
    now = utcnow()
    authors = range(FIRST_AUTHOR_ID, FIRST_AUTHOR_ID + FOLLOWED)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(Follow), [
                {"follower_id": reader_id, "followee_id": author,
                 "created_at": now - timedelta(days=31)} for author in authors])
            await conn.execute(insert(FollowCounts), [
                {"user_id": author, "follower_count": 1, "following_count": 0}
                for author in authors] + [
                {"user_id": reader_id, "follower_count": 0, "following_count": FOLLOWED}])
        batch = 5_000
        for _ in range(0, POSTS, batch):
            rows = []
            for _row in range(batch):
                at = now - timedelta(seconds=rng.uniform(0, 30 * 86_400))
                rows.append({"author_id": rng.choice(authors), "like_count": 0,
                             "comment_count": 0, "created_at": at, "updated_at": at,
                             "content": "bench post " + "x" * rng.randrange(20, 200)})
            async with engine.begin() as conn:
                await conn.execute(insert(Post), rows)
        return POSTS // 2
    finally:
        await engine.dispose()


async def deep_cursor(gateway_url: str, token: str) -> str:
    """The cursor of page DEEP_PAGE, by walking the pages before it."""
    cursor: str | None = None
    async with httpx.AsyncClient(base_url=gateway_url, timeout=60,
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        for _ in range(DEEP_PAGE - 1):
            params: dict[str, str | int] = {"limit": PAGE, **({"cursor": cursor} if cursor else {})}
            response = await client.get("/api/v1/feed", params=params)
            response.raise_for_status()
            cursor = response.json()["next_cursor"]
            if cursor is None:
                raise RuntimeError("the feed ended before page 50")
    assert cursor is not None
    return cursor


def merged(label: str, rounds: list[LoadResult]) -> LoadResult:
    latencies = [ms for result in rounds for ms in result.latencies_ms]
    return LoadResult(label, len(latencies), sum(r.errors for r in rounds),
                      sum(r.seconds for r in rounds), latencies,
                      {k: v for r in rounds for k, v in r.error_kinds.items()})


async def measure(args: argparse.Namespace, system: BenchSystem, database_url: str) -> None:
    account = await create_account(system)
    started = time.perf_counter()
    post_id = await seed(database_url, account.user_id)
    print(f"seeded {FOLLOWED:,} followed authors and {POSTS:,} posts in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    headers = {"Authorization": f"Bearer {account.access_token}"}
    api = f"{system.gateway_url}/api/v1"
    started = time.perf_counter()
    cursor = await deep_cursor(system.gateway_url, account.access_token)
    print(f"walked to page {DEEP_PAGE} in {time.perf_counter() - started:.1f} s", flush=True)
    targets = {
        "feed, first page": f"{api}/feed?limit={PAGE}",
        f"feed, page {DEEP_PAGE}": f"{api}/feed?limit={PAGE}&cursor={cursor}",
        "single post": f"{api}/posts/{post_id}",
    }
    for url in targets.values():  # warm pools and caches before anything counts
        await run_load("warm-up", url, headers=headers, concurrency=args.concurrency, duration=1.5)
    rounds: dict[str, list[LoadResult]] = {label: [] for label in targets}
    for index in range(args.rounds):
        for label, url in targets.items():
            result = await run_load(f"{label} (round {index + 1})", url, headers=headers,
                                    concurrency=args.concurrency, duration=args.seconds)
            rounds[label].append(result)
            print(result.line(), flush=True)
    totals = {label: merged(label, results) for label, results in rounds.items()}
    print()
    print(f"through the gateway, {args.concurrency} connections, {args.seconds:g} s x "
          f"{args.rounds} alternating rounds each, {FOLLOWED:,} followed, {POSTS:,} posts")
    for result in totals.values():
        print(result.line())
    feed_p99 = totals["feed, first page"].percentile(99)
    post_p99 = totals["single post"].percentile(99)
    ratio = feed_p99 / post_p99
    verdict = "meets" if ratio <= 3 else "misses"
    print(f"first page p99 / single post p99 = {ratio:.2f} (goal <= 3: {verdict} it)")


async def clear_redis() -> None:
    redis = Redis.from_url(REDIS_URL)
    try:
        await redis.flushdb()  # the benchmark's own database only, never FLUSHALL
    finally:
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(clear_redis())
    with feed_system(Path(tempfile.mkdtemp(prefix="bench-feed-"))) as (system, database_url):
        asyncio.run(measure(args, system, database_url))


if __name__ == "__main__":
    main()
