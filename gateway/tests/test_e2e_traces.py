"""Tracing on, end to end: every app a uvicorn process exporting over OTLP/HTTP to a receiver in
this test (shared/testing/otlp.py). One order is one trace, gateway -> order_service ->
stock_service, each hop's server span the child of the caller's client span; a payment's trace
reaches the processor and comes back as its webhook; every log line of the request carries the
trace id; a client's own trace context is not continued."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from gateway.tests.e2e import System, User, client_at, new_client_address, new_seller, new_user
from gateway.tests.e2e import running_system as start_system
from gateway.tests.test_e2e_orders import order, product
from shared.services import SERVICES
from shared.testing.mail import MailSink
from shared.testing.otlp import ReceivedSpan, SpanCollector, tracing_environment

APPS = ("gateway", "processor_sim", *(app.name for app in SERVICES))


@pytest.fixture(scope="module")
def collector() -> Iterator[SpanCollector]:
    receiver = SpanCollector().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def system(mail_sink: MailSink, redis_url: str, collector: SpanCollector,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    traced = tracing_environment(collector)
    with start_system(mail_sink, redis_url, tmp_path_factory.mktemp("traced-logs"),
                      overrides={name: traced for name in APPS}) as running:
        yield running


@pytest.fixture(scope="module")
async def people(system: System) -> list[User]:
    users = []
    for make in (new_seller, new_user):
        async with client_at(system, new_client_address()) as api:
            users.append(await make(api, system))
    return users


@pytest.fixture
async def api(system: System) -> AsyncIterator[httpx.AsyncClient]:
    async with client_at(system, new_client_address()) as client:
        yield client


def request_id() -> str:
    return "trace-test-" + os.urandom(8).hex()


def server_span(spans: list[ReceivedSpan], service: str, request: str) -> ReceivedSpan | None:
    return next((s for s in spans if s.service == service and s.kind == "server"
                 and s.attributes.get("request.id") == request), None)


def whole_trace(spans: list[ReceivedSpan], request: str) -> list[ReceivedSpan]:
    """The spans of the trace the gateway started for `request`, once every parent named in
    it has arrived (each process exports in its own batches, a child often before its parent);
    [] until then."""
    edge = server_span(spans, "gateway", request)
    if edge is None:
        return []
    trace = [s for s in spans if s.trace_id == edge.trace_id]
    ids = {s.span_id for s in trace}
    return trace if all(s.parent_id in ids for s in trace if s is not edge) else []


def is_http(span: ReceivedSpan) -> bool:
    """An HTTP span (the others a process makes: Redis commands, SQL statements)."""
    return "http.method" in span.attributes or "http.request.method" in span.attributes


def one_child(spans: list[ReceivedSpan], parent: ReceivedSpan, *, service: str,
              kind: str) -> ReceivedSpan:
    """The one HTTP span of `service` and `kind` whose parent is `parent`."""
    children = [s for s in spans if s.parent_id == parent.span_id and s.service == service
                and s.kind == kind and is_http(s)]
    assert len(children) == 1, (parent, children)
    return children[0]


def log_lines(system: System, name: str, request: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in system.log(name).splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("request_id") == request]


async def test_one_order_is_one_trace_from_the_gateway_to_stock(
    api: httpx.AsyncClient, people: list[User], system: System, collector: SpanCollector
) -> None:
    seller, buyer = people
    product_id = await product(api, seller, stock=3)
    request = request_id()
    created = await api.post("/api/v1/orders", json={"product_id": product_id, "quantity": 1},
                             headers=buyer.headers | {"X-Request-Id": request})
    assert created.status_code == 201, created.text

    spans = await collector.wait_for(
        lambda spans: {s.service for s in whole_trace(spans, request)}
        >= {"gateway", "order_service", "stock_service"})
    trace = whole_trace(spans, request)
    edge = server_span(spans, "gateway", request)
    assert edge is not None
    assert edge.parent_id == ""  # the gateway starts the trace
    assert edge.name == "POST /api/v1/orders/**"  # the route table's pattern, as in its metrics

    # gateway server -> its forwarding call -> order_service's server span -> its call to
    # stock_service -> stock_service's server span, each the child of the one before.
    forwarded = one_child(trace, edge, service="gateway", kind="client")
    at_order = one_child(trace, forwarded, service="order_service", kind="server")
    assert at_order.attributes["request.id"] == request
    assert at_order.attributes["http.route"] == "/api/v1/orders"
    reserve_call = one_child(trace, at_order, service="order_service", kind="client")
    at_stock = one_child(trace, reserve_call, service="stock_service", kind="server")
    assert at_stock.attributes["request.id"] == request
    # The Lua reserve in Redis and the statements in MySQL are in the trace, where they ran.
    assert any(s.service == "stock_service" and s.name.startswith("EVALSHA") for s in trace)
    assert any(s.service == "order_service" and s.attributes.get("db.system") == "mysql"
               and "INSERT" in str(s.attributes.get("db.statement", "")) for s in trace)

    # Only requests and HTTP calls start traces: no Redis command or statement of a
    # background loop (every app runs some) is a trace of its own.
    assert [s for s in spans if s.parent_id == "" and s.kind != "server" and not is_http(s)] == []

    # Every log line of the request names its trace, in each process it passed through.
    for name in ("gateway", "order", "stock"):
        lines = log_lines(system, name, request)
        assert lines, name
        assert {line.get("trace_id") for line in lines} == {edge.trace_id}, (name, lines)


async def test_a_payments_trace_reaches_the_processor_and_its_webhook(
    api: httpx.AsyncClient, people: list[User], collector: SpanCollector
) -> None:
    seller, buyer = people
    product_id = await product(api, seller, stock=3)
    created = await order(api, buyer, product_id)
    assert created.status_code == 201, created.text
    request = request_id()
    paid = await api.post("/api/v1/payments", json={"order_id": created.json()["id"],
                                                    "card_number": "4242424242424242"},
                          headers=buyer.headers | {"X-Request-Id": request})
    assert paid.status_code == 201, paid.text

    def webhook_back(spans: list[ReceivedSpan]) -> bool:
        trace = whole_trace(spans, request)
        return any(s.service == "payment_service" and s.kind == "server"
                   and s.parent_id in {c.span_id for c in trace if c.service == "processor_sim"}
                   for s in trace)

    spans = await collector.wait_for(webhook_back)
    trace = whole_trace(spans, request)
    edge = server_span(spans, "gateway", request)
    assert edge is not None
    at_payment = one_child(trace, one_child(trace, edge, service="gateway", kind="client"),
                           service="payment_service", kind="server")
    processor = [s for s in trace if s.service == "processor_sim" and s.kind == "server"]
    calls = {s.span_id for s in trace
             if s.service == "payment_service" and s.kind == "client" and is_http(s)}
    assert processor
    assert all(s.parent_id in calls for s in processor)
    assert any(s.parent_id == at_payment.span_id for s in trace if s.span_id in calls)


async def test_a_clients_trace_context_is_not_continued(
    api: httpx.AsyncClient, people: list[User], collector: SpanCollector
) -> None:
    _, buyer = people
    theirs = "4bf92f3577b34da6a3ce929d0e0e4736"
    request = request_id()
    response = await api.get("/api/v1/users/me", headers=buyer.headers | {
        "X-Request-Id": request, "traceparent": f"00-{theirs}-00f067aa0ba902b7-01"})
    assert response.status_code == 200, response.text
    spans = await collector.wait_for(lambda spans: all(
        server_span(spans, name, request) for name in ("gateway", "user_service")))
    edge = server_span(spans, "gateway", request)
    at_user = server_span(spans, "user_service", request)
    assert edge is not None
    assert at_user is not None
    assert edge.parent_id == ""
    assert edge.trace_id != theirs
    assert at_user.trace_id == edge.trace_id
    assert all(s.trace_id != theirs for s in spans)
