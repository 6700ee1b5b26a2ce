"""Run by shared/tests/test_tracing.py in a fresh interpreter, with the environment it is given:
builds every app (the gateway, each service, the processor simulator), sends one request
through each whole ASGI stack, opens a service client and an engine as the lifespans do, then
prints what tracing left behind as one JSON object: the tracing modules loaded beyond the API
(FastAPI imports the API itself), the tracer provider in force, and how many of the apps' log
lines named a trace."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sys

import httpx
from opentelemetry import trace
from starlette.types import ASGIApp

from gateway.app import create_app as create_gateway
from gateway.settings import Settings as GatewaySettings
from payment_service.simulator.app import create_app as create_simulator
from shared.db import create_engine
from shared.http import service_client
from shared.services import SERVICES
from shared.testing.apps import service_app

# The SDK's tracing, the exporters and their protobuf messages, the instrumentations, and our
# module that loads them. (Not the SDK's metrics: redis-py imports them itself when the SDK is
# installed, for an observability feature of its own that stays off unless initialised.)
BEYOND_THE_API = ("opentelemetry.sdk.trace", "opentelemetry.exporter", "opentelemetry.proto",
                  "opentelemetry.instrumentation", "shared.otel")
DATABASE_URL = "mysql+asyncmy://root@127.0.0.1:3306/tracing_probe"


async def one_request_each() -> None:
    apps: list[ASGIApp] = [create_gateway(GatewaySettings(environment="test")), create_simulator()]
    apps += [service_app(app.package, database_url=DATABASE_URL) for app in SERVICES]
    for app in apps:
        # A path no app has: the request still passes every layer in front of the router.
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://probe") as client:
            response = await client.get("/tracing-probe")
            assert response.status_code == 404, response.text
    async with service_client("probe", "http://127.0.0.1:9", signer=None, timeout_seconds=1):
        pass
    await create_engine(DATABASE_URL).dispose()


def main() -> None:
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        asyncio.run(one_request_each())
    lines = [json.loads(line) for line in captured.getvalue().splitlines()
             if line.startswith("{")]
    loaded = sorted(name for name in sys.modules if name.startswith(BEYOND_THE_API))
    provider = trace.get_tracer_provider()
    flush = getattr(provider, "force_flush", None)
    if flush is not None:
        flush()
    print(json.dumps({
        "loaded": loaded,
        "provider": type(provider).__name__,
        "access_lines": sum(1 for line in lines if line.get("logger") == "access"),
        "lines_with_trace": sum(1 for line in lines if "trace_id" in line),
    }))


if __name__ == "__main__":
    main()
