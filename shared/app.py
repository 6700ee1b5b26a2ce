"""create_service_app(): the frame every service shares, so knowing one service means knowing all."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from fastapi import APIRouter, FastAPI

from shared.errors import install_error_handlers
from shared.health import ReadinessCheck, health_router
from shared.metrics import install_metrics
from shared.request_context import RequestIdMiddleware


class Lifespan(Protocol):
    def __call__(self, app: FastAPI) -> AbstractAsyncContextManager[Any]: ...


def create_service_app(
    *,
    service: str,
    title: str,
    lifespan: Lifespan,
    routers: Sequence[APIRouter],
    readiness: Mapping[str, ReadinessCheck],
    version: str = "0.1.0",
) -> FastAPI:
    app = FastAPI(title=title, version=version, lifespan=lifespan)
    install_error_handlers(app)
    install_metrics(app, service)
    # Added last so it runs first: every log line and error body below it sees the request id.
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health_router(readiness))
    for router in routers:
        app.include_router(router)
    return app
