"""/healthz (the process is up) and /readyz (what it depends on answers).

A readiness check is an async function of the app's Resources object; it raises when its
dependency does not answer. Every app, the gateway included, answers in the same shape.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from shared.dependencies import AppResources, HasDatastores
from shared.errors import problem_response

ReadinessCheck = Callable[[Any], Awaitable[object]]
logger = logging.getLogger("shared.health")


async def check_database(resources: object) -> None:
    async with cast(HasDatastores, resources).datastores.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def check_redis(resources: object) -> None:
    await cast(HasDatastores, resources).datastores.redis.ping()


DATASTORE_CHECKS: Mapping[str, ReadinessCheck] = {"database": check_database, "redis": check_redis}


def health_router(checks: Mapping[str, ReadinessCheck], *, timeout: float = 2.0,
                  cache_seconds: float = 0.0) -> APIRouter:
    """`cache_seconds`: the checks' outcome is reused that long, and run by one request at a
    time, so a crowd asking /readyz (the gateway's fans out to every service) costs one round."""
    router = APIRouter(include_in_schema=False)
    last: list[tuple[float, list[str]]] = []
    one_round = asyncio.Lock()

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz(resources: AppResources) -> JSONResponse:
        async def run(name: str, check: ReadinessCheck) -> str | None:
            try:
                await asyncio.wait_for(check(resources), timeout)
            except Exception as exc:
                logger.warning("readiness check failed", extra={"check": name, "error": repr(exc)})
                return name
            return None

        async def failing() -> list[str]:
            return [n for n in await asyncio.gather(*(run(n, c) for n, c in checks.items())) if n]

        if cache_seconds <= 0:
            failed = await failing()
        else:
            async with one_round:
                if not last or time.monotonic() - last[0][0] >= cache_seconds:
                    last[:] = [(time.monotonic(), await failing())]
                failed = last[0][1]
        if failed:
            return problem_response(503, "not_ready", "Not ready",
                                    f"Failing: {', '.join(failed)}", extra={"failing": failed})
        return JSONResponse({"status": "ready", "checks": sorted(checks)})

    return router
