"""Opt-in OpenTelemetry tracing: whether it is on, and the hooks the frame calls while it is.

Off unless an OTLP endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT); OTEL_SDK_DISABLED=true turns it off again. Off, this module
is all there is: no OpenTelemetry SDK, exporter or instrumentation is imported, FastAPI's own
telemetry stays switched off, and the request path pays one `is None` test per request. On,
`start_tracing` loads shared.otel once per process, which sets up the SDK from the standard
OTEL_* variables (sampler, batch sizes, headers) and hands out the instrumented pieces.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import aiohttp
    from fastapi.telemetry import TelemetryConfig
    from sqlalchemy.ext.asyncio import AsyncEngine
    from starlette.types import ASGIApp, Scope

# Either names where spans go (the second only for traces); the SDK's exporter reads them itself.
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
# W3C trace context (and baggage) a request may carry. Services believe it, so only the gateway
# may set it: a client's is neither forwarded nor continued (it could force every trace to be
# sampled, or tie our spans to a trace of its choosing).
TRACE_CONTEXT_HEADERS = frozenset({b"traceparent", b"tracestate", b"baggage"})
# The span attribute that carries the request id (X-Request-Id) on every server span.
REQUEST_ID_ATTRIBUTE = "request.id"


def tracing_requested(environ: Mapping[str, str] = os.environ) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


class Tracing(Protocol):
    """What the frame asks of tracing while it is on (shared.otel.OpenTelemetryTracing)."""

    def fastapi_telemetry(self) -> TelemetryConfig:
        """FastAPI's own server spans, on (named by route, trace context read from the request)."""

    def edge(self, app: ASGIApp, *, route_of: Callable[[Scope], str | None]) -> ASGIApp:
        """The gateway's server span around `app`, named by the route `route_of` finds; a
        client's trace context is dropped first, so each request starts a trace of its own."""

    def client_trace_configs(self) -> list[aiohttp.TraceConfig]:
        """For an aiohttp session: a span per call, and the call's traceparent."""

    def instrument_engine(self, engine: AsyncEngine) -> None:
        """A span per statement the engine runs."""

    def note_request(self, request_id: str) -> None:
        """Puts the request id on the current server span."""

    def log_ids(self) -> tuple[str, str] | None:
        """The current trace and span id as hex, for a log line; None outside a span."""


_active: Tracing | None = None


def active() -> Tracing | None:
    """This process's tracing, or None when it is off (or not started yet)."""
    return _active


def start_tracing(service: str) -> Tracing | None:
    """Once per process, at app creation: sets tracing up when requested and returns it; None
    when off. `service` names the process's spans unless OTEL_SERVICE_NAME says otherwise."""
    global _active
    if _active is None and tracing_requested():
        from shared.otel import OpenTelemetryTracing

        _active = OpenTelemetryTracing(service)
    return _active


def client_trace_configs() -> list[aiohttp.TraceConfig]:
    """For a new aiohttp session: none when tracing is off (aiohttp then does nothing extra)."""
    return [] if _active is None else _active.client_trace_configs()
