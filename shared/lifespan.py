"""The datastores a service's lifespan opens and closes: engine, sessionmaker, Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from redis.asyncio import Redis

from shared.db import create_engine, create_sessionmaker, drain_background_tasks
from shared.settings import DatabaseSettingsMixin


@asynccontextmanager
async def datastores(app: FastAPI, settings: DatabaseSettingsMixin) -> AsyncIterator[None]:
    engine = create_engine(settings.database_url, pool_size=settings.database_pool_size)
    redis = Redis.from_url(settings.redis_url, decode_responses=True,
                           socket_connect_timeout=2, socket_timeout=5, max_connections=256)
    app.state.engine = engine
    app.state.sessionmaker = create_sessionmaker(engine)
    app.state.redis = redis
    try:
        yield
    finally:
        await drain_background_tasks()
        await redis.aclose()
        await engine.dispose()
