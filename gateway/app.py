"""Gateway application: its own few routes (health, readiness, docs) plus the proxy; /metrics on
an internal listener of its own (settings.metrics_port), never on the public port."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Scope

from gateway.openapi import OpenApiAggregator
from gateway.proxy import Proxy
from gateway.runtime import GatewayRuntime
from gateway.settings import Settings, get_settings
from shared import heap
from shared.app import NO_TELEMETRY
from shared.dependencies import RESOURCES_STATE_KEY
from shared.errors import install_error_handlers, problem_response
from shared.health import ReadinessCheck, health_router
from shared.logging import configure_logging
from shared.metrics import RequestMetrics, metrics_listener, route_template
from shared.middleware import RequestFrameMiddleware
from shared.sale_metrics import LOOPS, GatewayMetrics, bind_redis_probe
from shared.tracing import start_tracing

READINESS_TIMEOUT = aiohttp.ClientTimeout(total=2)


async def check_redis(runtime: GatewayRuntime) -> None:
    # Without Redis no token can be checked for revocation: not ready either.
    await runtime.redis.ping()


def upstream_ready(name: str) -> ReadinessCheck:
    async def check(runtime: GatewayRuntime) -> None:
        url = f"{runtime.upstreams.base_urls[name]}/readyz"
        async with runtime.upstreams.sessions[name].get(url, timeout=READINESS_TIMEOUT) as resp:
            if resp.status != 200:
                raise RuntimeError(f"{name} answered {resp.status}")

    return check


def readiness_checks(settings: Settings) -> dict[str, ReadinessCheck]:
    """Redis, and each upstream's own /readyz, named as in the route table."""
    return {"redis": check_redis, **{name: upstream_ready(name) for name in settings.upstreams()}}


class ProblemCORSMiddleware(CORSMiddleware):
    """Starlette's CORS handling, except that a refused preflight is problem+json, as every
    other error is, instead of a plain-text 400."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        cors = {k: v for k, v in response.headers.items()
                if k.startswith("access-control-") or k == "vary"}
        return problem_response(response.status_code, "cors_rejected", "Bad request",
                                bytes(response.body).decode(), headers=cors)


def gateway_route(scope: Scope) -> str:
    label = scope.get("gateway.route")
    return str(label) if label else route_template(scope)


def create_app(settings: Settings | None = None) -> ASGIApp:
    settings = settings or get_settings()
    configure_logging("gateway", settings.log_level)
    tracing = start_tracing("gateway")
    runtime = GatewayRuntime(settings)
    aggregator = OpenApiAggregator(runtime.table, settings.upstreams(),
                                   cache_seconds=settings.openapi_cache_seconds,
                                   title="Preorder API", version="0.1.0")
    metrics = RequestMetrics("gateway")
    sale = GatewayMetrics()
    for collector in (*sale.collectors(), *LOOPS.collectors()):
        metrics.register(collector)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, object]]:
        await runtime.start()
        bind_redis_probe(sale.redis_up, runtime.redis.ping)
        try:
            async with contextlib.AsyncExitStack() as stack:
                if settings.metrics_port is not None:
                    await stack.enter_async_context(metrics_listener(
                        metrics, settings.metrics_host, settings.metrics_port))
                heap.settle(settings.environment)
                # The runtime is the gateway's Resources object, handed to requests the same way.
                yield {RESOURCES_STATE_KEY: runtime}
        finally:
            bind_redis_probe(sale.redis_up, None)
            await runtime.close()

    app = FastAPI(title="Preorder gateway", lifespan=lifespan, telemetry=NO_TELEMETRY,
                  openapi_url=None, docs_url=None,
                  redoc_url=None)
    install_error_handlers(app)
    app.include_router(health_router(readiness_checks(settings),
                                     cache_seconds=settings.readiness_cache_seconds))

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi() -> Response:
        body = await aggregator.document(runtime.upstreams.sessions)
        return Response(body, media_type="application/json")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Preorder API")

    # The proxy sits in front of FastAPI, not inside it: proxied requests, nearly all of the
    # traffic, skip FastAPI's own middleware stack. Outermost first: the request frame (request
    # id, metrics, access line), CORS, the proxy.
    asgi: ASGIApp = Proxy(app, runtime=runtime, metrics=sale)
    if settings.cors_origins:
        asgi = ProblemCORSMiddleware(
            asgi, allow_origins=settings.cors_origins, allow_credentials=False,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-Id"],
            expose_headers=["X-Request-Id", "Retry-After"], max_age=600,
        )
    frame = RequestFrameMiddleware(asgi, metrics=metrics, route_of=gateway_route, tracing=tracing)
    if tracing is None:
        return frame

    def proxied_route(scope: Scope) -> str | None:
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        match = runtime.table.match(scope["method"], raw_path)
        return None if match is None else match.route.pattern

    # Outermost, so the request's every line and call (the frame's included) is in its span.
    return tracing.edge(frame, route_of=proxied_route)
