"""The yardstick: a FastAPI hello-world, served by one uvicorn worker like every service.

Benchmarks start it beside what they measure and report their rates as a share of its rate on
the same machine in the same run, since absolute figures differ threefold between machines.

`create_evalsha_app` is the same yardstick with one Redis call: a route at stock_service's
reserve path that parses the same body and sends the reserve script once through redis-py (the
pool every service uses), answering its refusal. What a route that makes one Redis round trip
per answer can reach at best, whatever else it does (loadtests.bench_stock).
"""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import FastAPI, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from redis.asyncio import BlockingConnectionPool, Redis

from stock_service.stock.scripts import REFUSAL_MEMORY_MS, RESERVE, ProductKeys


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app


class HoldBody(BaseModel):
    user_id: int
    quantity: int


def create_evalsha_app() -> FastAPI:
    """HELLO_REDIS_URL names the Redis (the benchmark's own database)."""
    app = create_app()
    # As shared.lifespan opens it for every service.
    redis = Redis.from_pool(BlockingConnectionPool.from_url(
        os.environ.get("HELLO_REDIS_URL", "redis://127.0.0.1:6379/14"), decode_responses=True,
        max_connections=128, timeout=5))
    reserve = redis.register_script(RESERVE)

    @app.put("/internal/stock/products/{product_id}/holds/{order_id}")
    async def hold(product_id: Annotated[int, Path()], order_id: Annotated[int, Path()],
                   body: HoldBody) -> JSONResponse:
        reply = await reserve(keys=ProductKeys.of(product_id).all,
                              args=[order_id, body.user_id, body.quantity, REFUSAL_MEMORY_MS])
        return JSONResponse({"code": reply[0]}, status_code=409)

    return app
