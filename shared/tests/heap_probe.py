"""Run by shared/tests/test_heap.py in a fresh interpreter: starts one app through the ASGI
lifespan protocol, as uvicorn does (argv: `gateway` or a service package, the environment it runs
in, a database URL and a Redis URL), and prints, as JSON, the cycle collector's thresholds and
how many objects were frozen once it had started."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys

from starlette.types import ASGIApp, Message

from gateway.app import create_app as create_gateway
from gateway.settings import Settings as GatewaySettings
from shared.testing.apps import service_app
from shared.testing.identity import TEST_IDENTITY_ENVIRONMENT


async def started(app_name: str, environment: str, database_url: str, redis_url: str) -> None:
    app: ASGIApp
    if app_name == "gateway":
        app = create_gateway(GatewaySettings(environment=environment, redis_url=redis_url))
    else:
        app = service_app(app_name, environment=environment, database_url=database_url,
                          redis_url=redis_url)
    to_app: asyncio.Queue[Message] = asyncio.Queue()
    from_app: asyncio.Queue[Message] = asyncio.Queue()
    await to_app.put({"type": "lifespan.startup"})
    async def serve_lifespan() -> None:
        await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                  to_app.get, from_app.put)

    lifespan = asyncio.create_task(serve_lifespan())
    answer = await from_app.get()
    if answer["type"] != "lifespan.startup.complete":
        raise SystemExit(f"did not start: {answer}")
    print(json.dumps({"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count()}))
    await to_app.put({"type": "lifespan.shutdown"})
    await lifespan


if __name__ == "__main__":
    os.environ.update(TEST_IDENTITY_ENVIRONMENT)
    asyncio.run(started(*sys.argv[1:5]))
