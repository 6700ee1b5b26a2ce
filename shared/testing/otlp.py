"""A tiny OTLP/HTTP trace receiver for tests: apps in other processes export their spans to it
(OTEL_EXPORTER_OTLP_ENDPOINT=its url), and a test reads them back as plain records. It speaks
the protocol's protobuf encoding, the one the SDK's OTLP/HTTP exporter sends by default."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shared.testing.net import ThreadedServer

PROTOBUF = "application/x-protobuf"
# opentelemetry.proto.trace.v1.Span.SpanKind
SPAN_KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer",
              5: "consumer"}


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a trace's root
    attributes: dict[str, Any]


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return None if kind is None else getattr(value, kind)


class SpanCollector:
    """Receives spans on loopback until stopped; `spans` is every span received so far. With
    `keep=False` (a benchmark's sink) it only counts exports and their bytes."""

    def __init__(self, *, keep: bool = True) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self.exports = 0
        self.received_bytes = 0
        self.server = ThreadedServer(Starlette(routes=[
            Route("/v1/traces", self._receive, methods=["POST"])]))

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> SpanCollector:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    async def _receive(self, request: Request) -> Response:
        body = await request.body()
        if not self.keep:
            with self._lock:
                self.exports += 1
                self.received_bytes += len(body)
            return Response(ExportTraceServiceResponse().SerializeToString(), media_type=PROTOBUF)
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        received = []
        for resource_spans in export.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(ReceivedSpan(
                        service=str(resource.get("service.name", "")), name=span.name,
                        kind=SPAN_KINDS.get(span.kind, str(span.kind)),
                        trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        attributes={a.key: _value(a.value) for a in span.attributes}))
        with self._lock:
            self._spans.extend(received)
            self.exports += 1
            self.received_bytes += len(body)
        return Response(ExportTraceServiceResponse().SerializeToString(), media_type=PROTOBUF)

    async def wait_for(self, found: Callable[[list[ReceivedSpan]], bool],
                       timeout: float = 20.0) -> list[ReceivedSpan]:
        """The spans once `found` holds of them (exports are batched, a moment after the fact)."""
        deadline = time.monotonic() + timeout
        while not found(spans := self.spans):
            if time.monotonic() > deadline:
                raise AssertionError(f"spans not received in {timeout} s; got {spans}")
            await asyncio.sleep(0.1)
        return spans


def tracing_environment(collector: SpanCollector) -> dict[str, str]:
    """What an app needs to export every span to `collector` within a moment."""
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_TRACES_SAMPLER": "always_on",
            "OTEL_BSP_SCHEDULE_DELAY": "100"}
