"""Tracing is opt-in. Off, no app loads the SDK's tracing, an exporter or an instrumentation,
and no span is made: none reaches a receiver, no log line names a trace. On (an OTLP endpoint
set), the same apps do all of that, so the off cases can fail. Each case builds every app in a
fresh interpreter (shared/tests/tracing_probe.py): what one process loaded is process-wide."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler
from opentelemetry.trace import SpanKind

from shared.otel import RequestsStartTraces
from shared.services import SERVICES
from shared.testing.otlp import SpanCollector, tracing_environment
from shared.tracing import tracing_requested

# The gateway and each service write an access line for the probe's request (the processor
# simulator writes none).
ACCESS_LINES = 1 + len(SERVICES)


@pytest.fixture(scope="module")
def collector() -> Iterator[SpanCollector]:
    receiver = SpanCollector().start()
    yield receiver
    receiver.stop()


def probe(**environment: str) -> dict[str, Any]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    env.update(APP_ENV="test", **environment)
    done = subprocess.run([sys.executable, "-m", "shared.tests.tracing_probe"], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_off_without_an_endpoint(collector: SpanCollector) -> None:
    before = len(collector.spans)
    found = probe()
    assert found["loaded"] == []
    assert found["provider"] == "ProxyTracerProvider"  # the API's: every span a no-op
    assert (found["access_lines"], found["lines_with_trace"]) == (ACCESS_LINES, 0)
    assert len(collector.spans) == before


def test_off_with_an_endpoint_when_the_sdk_is_disabled(collector: SpanCollector) -> None:
    before = len(collector.spans)
    found = probe(**tracing_environment(collector), OTEL_SDK_DISABLED="true")
    assert found["loaded"] == []
    assert found["provider"] == "ProxyTracerProvider"
    assert (found["access_lines"], found["lines_with_trace"]) == (ACCESS_LINES, 0)
    assert len(collector.spans) == before


def test_on_with_an_endpoint(collector: SpanCollector) -> None:
    before = len(collector.spans)
    found = probe(**tracing_environment(collector))
    assert {"opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter",
            "shared.otel"} <= set(found["loaded"])
    assert found["provider"] == "TracerProvider"
    assert (found["access_lines"], found["lines_with_trace"]) == (ACCESS_LINES, ACCESS_LINES)
    # The probe's process names itself after the first app it builds, the gateway.
    spans = collector.spans[before:]
    servers = [s for s in spans if s.kind == "server"]
    assert len(servers) == ACCESS_LINES + 1  # and the simulator's
    assert {s.service for s in servers} == {"gateway"}
    assert sum(1 for s in servers if "request.id" in s.attributes) == ACCESS_LINES


@pytest.mark.parametrize(("environment", "on"), [
    ({}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, False),  # compose's ${VAR:-} when unset
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "TRUE"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "false"}, True),
])
def test_which_settings_turn_tracing_on(environment: dict[str, str], on: bool) -> None:
    assert tracing_requested(environment) is on


def recorded_by(configured: Sampler) -> list[str]:
    """The names of the spans a provider with RequestsStartTraces(configured) records, of: a
    request with a Redis command in it, a loop's lone Redis command and SQL statement, and a
    loop's HTTP call."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=RequestsStartTraces(configured), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("GET /x", kind=SpanKind.SERVER):
        tracer.start_span("GET", kind=SpanKind.CLIENT, attributes={"db.system": "redis"}).end()
    tracer.start_span("EVALSHA", kind=SpanKind.CLIENT, attributes={"db.system": "redis"}).end()
    tracer.start_span("UPDATE", kind=SpanKind.CLIENT, attributes={"db.system": "mysql"}).end()
    tracer.start_span("POST", kind=SpanKind.CLIENT, attributes={"http.method": "POST"}).end()
    return sorted(span.name for span in exporter.get_finished_spans())


def test_only_requests_and_http_calls_start_a_trace() -> None:
    assert recorded_by(ALWAYS_ON) == ["GET", "GET /x", "POST"]
    assert recorded_by(ALWAYS_OFF) == []  # and otherwise the configured sampler decides
