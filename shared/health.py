"""/healthz (the process is up) and /readyz (its dependencies answer)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.errors import problem_response

ReadinessCheck = Callable[[Request], Awaitable[None]]
logger = logging.getLogger("shared.health")


async def check_database(request: Request) -> None:
    engine: AsyncEngine = request.app.state.engine
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def check_redis(request: Request) -> None:
    redis: Redis = request.app.state.redis
    await redis.ping()


def health_router(checks: Mapping[str, ReadinessCheck], *, timeout: float = 2.0) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        async def run(name: str, check: ReadinessCheck) -> str | None:
            try:
                await asyncio.wait_for(check(request), timeout)
            except Exception as exc:
                logger.warning("readiness check failed", extra={"check": name, "error": repr(exc)})
                return name
            return None

        failed = [n for n in await asyncio.gather(*(run(n, c) for n, c in checks.items())) if n]
        if failed:
            return problem_response(503, "not_ready", "Not ready",
                                    f"Failing: {', '.join(failed)}", extra={"failing": failed})
        return JSONResponse({"status": "ready", "checks": sorted(checks)})

    return router
