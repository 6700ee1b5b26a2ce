"""What a service's lifespan opens and closes for its datastores: engine, sessions, Redis, and the
after-commit work. The service puts them in its own frozen Resources object (see shared.app)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.db import AfterCommitTasks, create_engine, create_sessionmaker
from shared.reads import ReadSession
from shared.settings import DatastoreSettings

# Enough for every command in flight at once on one process; more only queue inside Redis.
REDIS_MAX_CONNECTIONS = 128
# Per node of a cluster. The cluster client has no blocking pool: past this a command fails at
# once instead of waiting its turn, so the bound sits well above any burst's commands in flight.
REDIS_CLUSTER_MAX_CONNECTIONS_PER_NODE = 512


def open_redis(url: str, *, cluster: bool, max_connections: int = REDIS_MAX_CONNECTIONS,
               connect_timeout: float = 2, timeout: float = 5) -> Redis:
    """A client for one Redis, or (`cluster`) for the Redis Cluster that `url`'s node is in.

    Typed as `Redis` either way: every command and script the apps send names keys of one hash
    slot (their hash tags keep them so), which a cluster client serves with the same call
    signatures; the Redis Cluster tests run the apps on one for real.
    """
    if cluster:
        return cast(Redis, RedisCluster.from_url(
            url, decode_responses=True, socket_connect_timeout=connect_timeout,
            socket_timeout=timeout, max_connections=REDIS_CLUSTER_MAX_CONNECTIONS_PER_NODE))
    # A blocking pool: past max_connections a command waits its turn (up to the timeout)
    # instead of failing with "Too many connections" in the middle of a burst.
    return Redis.from_pool(BlockingConnectionPool.from_url(
        url, decode_responses=True, socket_connect_timeout=connect_timeout,
        socket_timeout=timeout, max_connections=max_connections, timeout=timeout))


def same_slot_groups(redis: Redis | RedisCluster, keys: Sequence[str]) -> list[list[str]]:
    """`keys` in groups that one script may be given: all of them on a single Redis; on a
    cluster, one group per hash slot (a script's keys must share a slot there)."""
    if not isinstance(redis, RedisCluster):
        return [list(keys)] if keys else []
    groups: dict[int, list[str]] = {}
    for key in keys:
        groups.setdefault(redis.keyslot(key), []).append(key)
    return list(groups.values())


@dataclass(frozen=True, kw_only=True)
class Datastores:
    # Transactions (the request session, loops that write).
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    # Plain reads, outside any transaction (routes that only read, and flows' reads between
    # their transactions).
    reads: ReadSession
    redis: Redis
    after_commit: AfterCommitTasks


@asynccontextmanager
async def open_datastores(settings: DatastoreSettings) -> AsyncIterator[Datastores]:
    engine = create_engine(settings.database_url, pool_size=settings.database_pool_size)
    reads = await ReadSession.open(settings.database_url, pool_size=settings.database_read_pool_size)
    redis = open_redis(settings.redis_url, cluster=settings.redis_cluster)
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
