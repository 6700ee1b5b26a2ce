"""Prometheus request counts and latency histograms per route template and status."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.responses import Response
from starlette.types import Scope

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
        # labels() takes a lock and builds a key on every call; the children are few (routes x
        # methods x statuses) and are kept here once made.
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._histograms: dict[tuple[str, str], Histogram] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        counter = self._counters.get((method, route, status))
        if counter is None:
            counter = self.requests.labels(self.service, method, route, str(status))
            self._counters[method, route, status] = counter
        counter.inc()
        histogram = self._histograms.get((method, route))
        if histogram is None:
            histogram = self.latency.labels(self.service, method, route)
            self._histograms[method, route] = histogram
        histogram.observe(seconds)

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def route_template(scope: Scope) -> str:
    """The matched route's path template, never the raw path, so label cardinality stays bounded."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else "unmatched"
