"""Prometheus request counts and latency histograms per route template and status, and one
access-log line per request (carrying the request id, like every other line)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from fastapi import FastAPI
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_logger = logging.getLogger("access")

# nginx's status for a request the client abandoned before any answer was sent.
CLIENT_CLOSED_REQUEST = 499
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RequestMetrics:
    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total", "HTTP requests answered", ["service", "method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds", "Time to answer an HTTP request",
            ["service", "method", "route"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.service = service

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(self.service, method, route, str(status)).inc()
        self.latency.labels(self.service, method, route).observe(seconds)

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def route_template(scope: Scope) -> str:
    """The matched route's path template, never the raw path, so label cardinality stays bounded."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else "unmatched"


class MetricsMiddleware:
    def __init__(
        self, app: ASGIApp, metrics: RequestMetrics,
        route_of: Callable[[Scope], str] = route_template,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.route_of = route_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None
        client_gone = False

        async def receive_watching() -> Message:
            nonlocal client_gone
            message = await receive()
            client_gone = client_gone or message["type"] == "http.disconnect"
            return message

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive_watching, send_recording)
        finally:
            if status is None:
                # Nothing was answered: the client left first, or the app failed.
                status = CLIENT_CLOSED_REQUEST if client_gone else 500
            elapsed = time.perf_counter() - started
            route = self.route_of(scope)
            self.metrics.observe(scope["method"], route, status, elapsed)
            if access_logger.isEnabledFor(logging.INFO):
                access_logger.info("%s %s %d", scope["method"], scope["path"], status, extra={
                    "route": route, "status": status, "duration_ms": round(elapsed * 1000, 2)})


def install_metrics(app: FastAPI, service: str) -> RequestMetrics:
    metrics = RequestMetrics(service)

    async def metrics_endpoint(_: Request) -> Response:
        return metrics.render()

    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return metrics
