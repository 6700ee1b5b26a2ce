"""Tracing while it is on: the OpenTelemetry SDK with its OTLP/HTTP exporter, and the official
instrumentations wired into the frame. Imported by shared.tracing.start_tracing only, so a
process with tracing off never loads any of it.

One provider per process, named after the app (OTEL_SERVICE_NAME overrides it); the sampler,
the batch processor's sizes and the exporter's endpoint, headers and timeout come from the
standard OTEL_* variables, read by the SDK itself. Spans:
- a server span per request: FastAPI's own for the services, the ASGI instrumentation's for the
  gateway (whose proxy runs in front of FastAPI), with the request id as `request.id`;
- a client span per aiohttp call (gateway forwarding, service-to-service calls, the processor's
  webhooks), which also sends the W3C `traceparent` the next server span continues;
- a span per Redis command (a Lua script is its EVALSHA) and per SQLAlchemy statement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
from fastapi.telemetry import TelemetryConfig
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.aiohttp_client import create_trace_config
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.tracing import REQUEST_ID_ATTRIBUTE, TRACE_CONTEXT_HEADERS

# Probes and scrapes every few seconds would bury the requests people look for.
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def _untraced(scope: Any) -> bool:
    return scope.get("path") in UNTRACED_PATHS


# What the HTTP instrumentations call the method, in the old and the new conventions.
_HTTP_METHOD_ATTRIBUTES = ("http.method", "http.request.method")


class RequestsStartTraces(Sampler):
    """Only a request (a server span) or an HTTP call starts a trace. A Redis command or SQL
    statement outside any request (a background loop's round, every fraction of a second) is
    not recorded: a trace of its own for each would bury the requests. Everything else is the
    configured sampler's decision (OTEL_TRACES_SAMPLER)."""

    def __init__(self, configured: Sampler) -> None:
        self.configured = configured

    def should_sample(self, parent_context: Context | None, trace_id: int, name: str,
                      kind: SpanKind | None = None, attributes: Attributes = None,
                      links: Sequence[Link] | None = None,
                      trace_state: TraceState | None = None) -> SamplingResult:
        starts_a_trace = not trace.get_current_span(parent_context).get_span_context().is_valid
        if starts_a_trace and kind != SpanKind.SERVER and not any(
                key in (attributes or {}) for key in _HTTP_METHOD_ATTRIBUTES):
            return SamplingResult(Decision.DROP)
        return self.configured.should_sample(parent_context, trace_id, name, kind, attributes,
                                             links, trace_state)

    def get_description(self) -> str:
        return f"RequestsStartTraces{{{self.configured.get_description()}}}"


class OpenTelemetryTracing:
    def __init__(self, service: str) -> None:
        # Resource.create reads OTEL_RESOURCE_ATTRIBUTES and lets OTEL_SERVICE_NAME win.
        self.provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
        # The provider read OTEL_TRACES_SAMPLER (and its argument) when it was made; wrapped
        # before any tracer is handed out, since each tracer keeps the sampler it was given.
        self.provider.sampler = RequestsStartTraces(self.provider.sampler)
        # Batched and sent from the processor's own thread; flushed at exit (the SDK's atexit).
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(self.provider)
        self._sql_tracer = self.provider.get_tracer("shared.otel.sqlalchemy")
        # Redis's instrumentation patches the client classes, clients made before included.
        RedisInstrumentor().instrument(tracer_provider=self.provider)

    def fastapi_telemetry(self) -> TelemetryConfig:
        return {"tracing": True, "metrics": False, "logs": False, "operation_spans": False,
                "tracer_provider": self.provider, "exclude": _untraced}

    def edge(self, app: ASGIApp, *, route_of: Callable[[Scope], str | None]) -> ASGIApp:
        def span_details(scope: Scope) -> tuple[str, dict[str, Any]]:
            method = scope.get("method", "HTTP")
            route = route_of(scope)
            if route is None:
                return method, {}
            return f"{method} {route}", {"http.route": route}

        traced = OpenTelemetryMiddleware(
            app, excluded_urls=",".join(f"{path}$" for path in UNTRACED_PATHS),
            default_span_details=span_details, tracer_provider=self.provider,
            # One span per request, not one more per ASGI message sent or received.
            exclude_spans=["receive", "send"])
        return _WithoutClientTraceContext(traced)

    def client_trace_configs(self) -> list[aiohttp.TraceConfig]:
        return [create_trace_config(tracer_provider=self.provider)]

    def instrument_engine(self, engine: AsyncEngine) -> None:
        # EngineTracer per engine: the instrumentor's instrument() takes one engine per process.
        usage = metrics.get_meter("shared.otel.sqlalchemy").create_up_down_counter(
            "db.client.connections.usage")
        EngineTracer(self._sql_tracer, engine.sync_engine, usage)  # type: ignore[no-untyped-call]

    def note_request(self, request_id: str) -> None:
        trace.get_current_span().set_attribute(REQUEST_ID_ATTRIBUTE, request_id)

    def log_ids(self) -> tuple[str, str] | None:
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return None
        return format(context.trace_id, "032x"), format(context.span_id, "016x")


class _WithoutClientTraceContext:
    """Drops the trace context a client sent before the gateway's server span reads it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and any(
                name in TRACE_CONTEXT_HEADERS for name, _ in scope["headers"]):
            scope = dict(scope)
            scope["headers"] = [(name, value) for name, value in scope["headers"]
                                if name not in TRACE_CONTEXT_HEADERS]
        await self.app(scope, receive, send)
