"""What a service's lifespan opens and closes for its datastores: engine, sessions, Redis, and the
after-commit work. The service puts them in its own frozen Resources object (see shared.app)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from redis.asyncio import BlockingConnectionPool, Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.db import AfterCommitTasks, create_engine, create_sessionmaker
from shared.reads import ReadSession
from shared.settings import DatastoreSettings

# Enough for every command in flight at once on one process; more only queue inside Redis.
REDIS_MAX_CONNECTIONS = 128


@dataclass(frozen=True, kw_only=True)
class Datastores:
    # Transactions (the request session, loops that write).
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    # Plain reads, outside any transaction (routes that only read).
    reads: ReadSession
    redis: Redis
    after_commit: AfterCommitTasks


@asynccontextmanager
async def open_datastores(settings: DatastoreSettings) -> AsyncIterator[Datastores]:
    engine = create_engine(settings.database_url, pool_size=settings.database_pool_size)
    reads = await ReadSession.open(settings.database_url, pool_size=settings.database_read_pool_size)
    # A blocking pool: past max_connections a command waits its turn (up to the timeout)
    # instead of failing with "Too many connections" in the middle of a burst.
    redis = Redis.from_pool(BlockingConnectionPool.from_url(
        settings.redis_url, decode_responses=True, socket_connect_timeout=2, socket_timeout=5,
        max_connections=REDIS_MAX_CONNECTIONS, timeout=5))
    datastores = Datastores(engine=engine, sessionmaker=create_sessionmaker(engine),
                            reads=reads, redis=redis,
                            after_commit=AfterCommitTasks())
    try:
        yield datastores
    finally:
        await datastores.after_commit.drain()
        await redis.aclose()
        await reads.close()
        await engine.dispose()
