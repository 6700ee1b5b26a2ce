"""create_service_app(): the frame every service shares, so knowing one service means knowing all."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.telemetry import TelemetryConfig
from prometheus_client.registry import Collector
from starlette.types import ASGIApp

from shared import heap
from shared.dependencies import RESOURCES_STATE_KEY, HasDatastores
from shared.errors import install_error_handlers
from shared.health import DATASTORE_CHECKS, ReadinessCheck, health_router
from shared.identity import IDENTITY_VERIFIER_STATE, IdentityCheck
from shared.internal_listener import internal_listener
from shared.metrics import RequestMetrics
from shared.middleware import RequestFrameMiddleware
from shared.settings import InternalListenerSettings, ServiceSettings
from shared.tracing import start_tracing

# FastAPI's built-in OpenTelemetry hooks, off unless tracing is (shared.tracing): metrics are
# Prometheus (shared.metrics), and with them on FastAPI asks on every request whether a
# provider has been configured.
NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False,
                                 "operation_spans": False}


class ServiceResources(HasDatastores, Protocol):
    """What the frame needs of a service's Resources: its datastores and its settings."""

    @property
    def settings(self) -> ServiceSettings: ...


# Builds the service's frozen Resources object when the app starts and closes it at shutdown.
OpenResources = Callable[[], AbstractAsyncContextManager[ServiceResources]]


def create_service_app(
    *,
    service: str,
    title: str,
    resources: OpenResources,
    routers: Sequence[APIRouter],
    readiness: Mapping[str, ReadinessCheck] = DATASTORE_CHECKS,
    collectors: Sequence[Collector] = (),
    front: Sequence[Callable[[ASGIApp], ASGIApp]] = (),
    version: str = "0.1.0",
) -> FastAPI:
    """`collectors`: the service's own Prometheus metrics, shown on its /metrics beside the
    request metrics. `front`: ASGI layers that may answer a request before the router does,
    inside the request frame (request id, metrics and access line), outermost first: a hot
    path's cheap answer that needs none of the framework (order_service's sold-out refusal)."""
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, object]]:
        # Yielded as lifespan state: every request finds it in request.state, typed by the
        # service's own dependency (and replaceable in tests through dependency_overrides).
        async with resources() as built:
            heap.settle(built.settings.environment)
            # Refuses to start without the public keys: a service that cannot check signatures
            # could only refuse every caller, or believe every one. Requests are signed for this
            # service by its package name (the audience).
            state: dict[str, object] = {
                RESOURCES_STATE_KEY: built,
                IDENTITY_VERIFIER_STATE: built.settings.identity_verifier(service)}
            settings = built.settings
            host, port = ((settings.internal_host, settings.internal_port)
                          if isinstance(settings, InternalListenerSettings) else ("", None))
            async with internal_listener(app, state, host=host, port=port):
                yield state

    # Tracing on (an OTLP endpoint set): FastAPI's own server spans; off, its hooks stay off.
    tracing = start_tracing(service)
    telemetry = NO_TELEMETRY if tracing is None else tracing.fastapi_telemetry()
    app = FastAPI(title=title, version=version, lifespan=lifespan, telemetry=telemetry)
    install_error_handlers(app)
    metrics = RequestMetrics(service)
    for collector in collectors:
        metrics.register(collector)

    async def metrics_endpoint(_: Request) -> Response:
        return await metrics.render()

    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    for layer in reversed(front):  # Starlette puts the last added outermost
        app.add_middleware(layer)
    # Every signed request is checked as it arrives, before a front layer or the router runs.
    app.add_middleware(IdentityCheck)
    # Added last so it runs first: every log line and error body below it sees the request id.
    app.add_middleware(RequestFrameMiddleware, metrics=metrics, tracing=tracing)
    app.include_router(health_router(readiness))
    for router in routers:
        app.include_router(router)
    return app
