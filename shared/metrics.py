"""Prometheus request counts and latency histograms per route template and status, and the
exposition of a service's registry (its own collectors beside them, shared/sale_metrics.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.registry import Collector
from starlette.responses import Response
from starlette.types import Scope

from shared.sale_metrics import RefreshedAtScrape

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
        self._refreshed: list[RefreshedAtScrape] = []

    def register(self, collector: Collector) -> None:
        """A collector shown beside the request metrics; one read from a datastore at scrape
        time (RefreshedAtScrape) is refreshed before each exposition."""
        self.registry.register(collector)
        if isinstance(collector, RefreshedAtScrape):
            self._refreshed.append(collector)

    async def exposition(self) -> bytes:
        if self._refreshed:
            await asyncio.gather(*(collector.refresh() for collector in self._refreshed))
        return generate_latest(self.registry)

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

    async def render(self) -> Response:
        return Response(await self.exposition(), media_type=CONTENT_TYPE_LATEST)


def route_template(scope: Scope) -> str:
    """The matched route's path template, never the raw path, so label cardinality stays bounded."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else "unmatched"


logger = logging.getLogger("shared.metrics")
_REQUEST_TIMEOUT_SECONDS = 5.0
_MAX_REQUEST_BYTES = 8192


@asynccontextmanager
async def metrics_listener(metrics: RequestMetrics, host: str,
                           port: int) -> AsyncIterator[int]:
    """GET /metrics on an internal listener of its own (yields the bound port): never on the
    public port, where anyone could read request rates and latencies of every route."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_REQUEST_TIMEOUT_SECONDS):
                head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError):
            writer.close()
            return
        method, _, rest = head.partition(b" ")
        path = rest.partition(b" ")[0]
        if method in (b"GET", b"HEAD") and path.partition(b"?")[0] == b"/metrics":
            body = await metrics.exposition()
            status, kind = b"200 OK", CONTENT_TYPE_LATEST.encode()
        else:
            body, status, kind = b"not found\n", b"404 Not Found", b"text/plain"
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: " + kind
                     + b"\r\nContent-Length: " + str(len(body)).encode()
                     + b"\r\nConnection: close\r\n\r\n" + (body if method != b"HEAD" else b""))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, host, port, limit=_MAX_REQUEST_BYTES)
    bound = int(server.sockets[0].getsockname()[1])
    logger.info("metrics listener", extra={"host": host, "port": bound})
    try:
        yield bound
    finally:
        server.close()
        await server.wait_closed()
