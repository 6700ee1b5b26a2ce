"""Admission's layer in front of the router (orders/admission.py) on its own: what it answers
itself and what it must hand on to the route untouched. The route's side (the same answer
either way, request by request) is tested through a real order_service in test_router.py."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from order_service.app import create_app
from order_service.dependencies import Resources, get_order_creation
from order_service.orders.admission import ORDERS_PATH, OrderAdmission, OrderAdmissionFront
from order_service.orders.creation import OrderCreation
from order_service.orders.errors import TooManyWaiting
from order_service.settings import Settings
from shared.dependencies import RESOURCES_STATE_KEY, AppResources
from shared.fast_path import MAX_BODY
from shared.identity import IDENTITY_VERIFIER_STATE, IdentityCheck
from shared.metrics import route_template
from shared.sold_out import InFlightLimit, Slot, SoldOutMemory
from shared.testing.apps import running_app
from shared.testing.datastores import fresh_database
from shared.testing.identity import (
    SIGN_AT_SEND,
    identity_verifier,
    signed_identity_headers,
    signed_now,
)
from shared.testing.net import free_port

PRODUCT = 7
JSON = {"content-type": "application/json"}


class Downstream:
    """The app behind the layer: records what reached it, body included, and answers 299."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def call(memory: SoldOutMemory, *, body: bytes | Sequence[bytes],
               headers: dict[str, str] | None = None, method: str = "POST",
               path: str = ORDERS_PATH, reserving: InFlightLimit | None = None,
               downstream: Downstream | None = None,
               ) -> tuple[int, dict[str, Any] | None, Downstream]:
    downstream = downstream or Downstream()
    # As the app runs it: every signature checked as the request arrives, then the layer.
    layer = IdentityCheck(OrderAdmissionFront(downstream))
    if headers is None:
        headers = signed_identity_headers(1, "s" * 32) | JSON
    chunks = [body] if isinstance(body, bytes) else list(body)
    if SIGN_AT_SEND in headers:
        headers = signed_now(headers, method=method, target=path, body=b"".join(chunks),
                             audience="order_service")
    messages: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http", "method": method, "path": path,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "state": {RESOURCES_STATE_KEY: SimpleNamespace(admission=OrderAdmission(
                      sold_out=memory, reserving=reserving or InFlightLimit(64, 5))),
                  IDENTITY_VERIFIER_STATE: identity_verifier("order_service")},
    }
    await layer(scope, receive, send)
    status = sent[0]["status"]
    problem = json.loads(sent[1]["body"]) if status != 299 else None
    if problem is not None and status != 401:  # a refused signature never reaches the layer
        assert route_template(scope) == ORDERS_PATH  # the frame labels it as the route's
    return status, problem, downstream


def refusing(seconds: float = 60) -> SoldOutMemory:
    memory = SoldOutMemory(seconds)
    memory.remember(PRODUCT, 1)
    return memory


def order_body(**fields: Any) -> bytes:
    return json.dumps({"product_id": PRODUCT, "quantity": 1} | fields).encode()


async def test_a_signed_order_the_memory_refuses_is_answered_without_the_route() -> None:
    status, problem, downstream = await call(refusing(), body=order_body())
    assert (status, problem and problem["code"]) == (409, "sold_out")
    assert downstream.bodies == []


async def test_a_json_media_type_with_parameters_or_a_suffix_is_json() -> None:
    for content_type in ("application/json; charset=utf-8", "Application/JSON",
                         "application/merge-patch+json"):
        headers = signed_identity_headers(1, "s" * 32) | {"content-type": content_type}
        status, _, downstream = await call(refusing(), body=order_body(), headers=headers)
        assert (status, downstream.bodies) == (409, []), content_type


async def test_a_body_in_several_pieces_is_read_whole() -> None:
    whole = order_body()
    status, _, downstream = await call(refusing(), body=[whole[:5], whole[5:]])
    assert (status, downstream.bodies) == (409, [])


@pytest.mark.parametrize("body", [
    order_body(quantity=True), order_body(product_id=True), order_body(quantity=1.0),
    order_body(quantity="1"), order_body(quantity=0), order_body(quantity=101),
    order_body(product_id=2**53), order_body(extra=1), b'{"product_id": 7}', b"[7, 1]",
    b"not json", b"", order_body() + b" " * MAX_BODY, b"[" * 1000,
])
async def test_a_body_the_route_would_read_otherwise_goes_to_the_route_as_sent(
        body: bytes) -> None:
    status, _, downstream = await call(refusing(), body=body)
    assert (status, downstream.bodies) == (299, [body])


@pytest.mark.parametrize("headers", [
    signed_identity_headers(1, "s" * 32),  # no content-type: FastAPI does not read it as JSON
    signed_identity_headers(1, "s" * 32) | {"content-type": "text/plain"},
    JSON,  # not through the gateway
    signed_identity_headers(None, None) | JSON,  # a public caller
    signed_identity_headers(1, "s" * 32) | JSON | {"Idempotency-Key": "k1"},  # stored by the route
])
async def test_a_caller_the_route_must_see_goes_to_the_route(headers: dict[str, str]) -> None:
    status, _, downstream = await call(refusing(), body=order_body(), headers=headers)
    assert (status, downstream.bodies) == (299, [order_body()])


async def test_a_forged_signature_is_refused_before_the_layer() -> None:
    forged = signed_identity_headers(1, "s" * 32, key="another-key") | JSON
    status, problem, downstream = await call(refusing(), body=order_body(), headers=forged)
    assert (status, problem and problem["code"], downstream.bodies) == (401, "missing_token", [])


async def test_what_the_memory_does_not_refuse_goes_to_the_route() -> None:
    for memory, body in [
        (SoldOutMemory(60), order_body()),  # never refused
        (refusing(), order_body(product_id=PRODUCT + 1)),  # another product
    ]:
        status, _, downstream = await call(memory, body=body)
        assert (status, downstream.bodies) == (299, [body])
    lapsed = refusing(seconds=0.001)
    lapsed._refused[PRODUCT].until = 0  # the period is over: someone must ask stock again
    status, _, downstream = await call(lapsed, body=order_body())
    assert (status, downstream.bodies) == (299, [order_body()])


async def test_other_routes_pass_untouched() -> None:
    for method, path in [("GET", ORDERS_PATH), ("POST", ORDERS_PATH + "/1/cancel")]:
        status, _, downstream = await call(refusing(), body=order_body(), method=method,
                                           path=path)
        assert (status, downstream.bodies) == (299, [order_body()])


@asynccontextmanager
async def all_slots_taken(limit: InFlightLimit) -> AsyncIterator[asyncio.Event]:
    """Every reserve slot of PRODUCT held (the first orders of an opening, in flight) until
    the event is set."""
    done = asyncio.Event()

    async def holder() -> None:
        async with limit.slot(PRODUCT):
            await done.wait()

    holders = [asyncio.create_task(holder()) for _ in range(limit.limit)]
    await asyncio.sleep(0)
    assert limit.busy(PRODUCT)
    try:
        yield done
    finally:
        done.set()
        await asyncio.gather(*holders)


async def test_the_crowd_behind_the_slots_waits_here_and_is_refused_when_stock_says_so() -> None:
    memory, limit = SoldOutMemory(60), InFlightLimit(2, wait_seconds=5)
    async with all_slots_taken(limit) as done:
        waiting = [asyncio.create_task(call(memory, body=order_body(), reserving=limit))
                   for _ in range(20)]
        await asyncio.sleep(0.01)
        assert not any(task.done() for task in waiting)
        # The reserves in flight are answered sold_out: the route remembers it, the slots
        # come back, and each waiter's turn is a refusal given here.
        memory.remember(PRODUCT, 1)
        done.set()
        answers = await asyncio.wait_for(asyncio.gather(*waiting), 2)
    assert {(status, problem and problem["code"]) for status, problem, _ in answers} == \
        {(409, "sold_out")}
    assert all(downstream.bodies == [] for _, _, downstream in answers)
    assert limit._slots == {}  # every turn given back


class RouteUsingTheSlot(Downstream):
    """A route that reserves as order_service's does, inside limit.slot(PRODUCT) with the slot
    the layer handed on."""

    def __init__(self, limit: InFlightLimit) -> None:
        super().__init__()
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handed_on = [value for value in scope.values() if isinstance(value, Slot)]
        assert len(handed_on) == 1
        async with self.limit.slot(PRODUCT, taken=handed_on[0]):
            await asyncio.sleep(0.01)
            await super().__call__(scope, receive, send)


async def test_a_waiter_goes_on_to_the_route_with_its_turn_and_its_body() -> None:
    memory, limit = SoldOutMemory(60), InFlightLimit(1, wait_seconds=5)
    route = RouteUsingTheSlot(limit)
    async with all_slots_taken(limit) as done:
        waiting = [asyncio.create_task(call(memory, body=order_body(quantity=n), reserving=limit,
                                            downstream=route)) for n in (1, 2, 3)]
        await asyncio.sleep(0.01)
        assert route.bodies == []
        done.set()  # the reserve in flight was held: its slot comes back
        answers = await asyncio.wait_for(asyncio.gather(*waiting), 2)
    assert [status for status, _, _ in answers] == [299] * 3
    # In the order they came, each through the route with the slot its turn got (with one
    # slot, a route waiting again would wait for itself).
    assert route.bodies == [order_body(quantity=n) for n in (1, 2, 3)]
    assert limit._slots == {}


async def test_a_turn_the_route_did_not_use_is_given_back() -> None:
    limit = InFlightLimit(1, wait_seconds=5)
    async with all_slots_taken(limit) as done:
        waiting = [asyncio.create_task(call(SoldOutMemory(60), body=order_body(),
                                            reserving=limit)) for _ in range(3)]
        await asyncio.sleep(0.01)
        done.set()
        answers = await asyncio.wait_for(asyncio.gather(*waiting), 2)
    assert [status for status, _, _ in answers] == [299] * 3  # the stand-in route takes no slot
    assert limit._slots == {}


async def test_a_wait_past_the_routes_bound_is_the_routes_503() -> None:
    limit = InFlightLimit(1, wait_seconds=0.05)
    async with all_slots_taken(limit):
        status, problem, downstream = await call(SoldOutMemory(60), body=order_body(),
                                                 reserving=limit)
    assert problem is not None
    assert (status, problem["code"], downstream.bodies) == (503, "upstream_unavailable", [])
    assert problem["detail"] == TooManyWaiting().detail
    assert limit._slots == {}


async def test_a_caller_the_route_must_see_does_not_wait_here() -> None:
    limit = InFlightLimit(1, wait_seconds=5)
    async with all_slots_taken(limit):
        for headers in [JSON, signed_identity_headers(None, None) | JSON,
                        signed_identity_headers(1, "s" * 32) | JSON | {"Idempotency-Key": "k1"}]:
            status, _, downstream = await asyncio.wait_for(
                call(SoldOutMemory(60), body=order_body(), headers=headers, reserving=limit), 1)
            assert (status, downstream.bodies) == (299, [order_body()])


# The rule "a fast answer only answers what the route would", request by request: the same
# requests sent to the app as it runs (admission's layer in front) and to the same app without
# the layer (the route answers everything), their answers compared.

SOLD_OUT_PRODUCT, ASKING_PRODUCT = 7, 8
ROUTE_RUNS: list[str] = []


@dataclass(frozen=True)
class BothWays:
    front: httpx.AsyncClient
    route_only: httpx.AsyncClient


@pytest.fixture(scope="module")
def admission_database() -> str:
    return fresh_database("order_service", "preorder_order", "admission")


def noting_app(settings: Settings, way: str, *, with_layer: bool) -> FastAPI:
    """The app, every run of the create route noted in ROUTE_RUNS under `way`; without the
    layer in front, the route answers everything."""
    app = create_app(settings)

    async def noted(resources: AppResources) -> OrderCreation:
        ROUTE_RUNS.append(way)
        return await get_order_creation(resources)

    app.dependency_overrides[get_order_creation] = noted
    if not with_layer:
        app.user_middleware = [m for m in app.user_middleware if m.cls is not OrderAdmissionFront]
    return app


@pytest.fixture(scope="module")
async def both_ways(redis_url: str, admission_database: str) -> AsyncIterator[BothWays]:
    settings = Settings(
        environment="test", log_level="WARNING", redis_url=redis_url,
        database_url=admission_database,
        # Nobody listens there: an order the memory lets ask is the route's 503, both ways.
        stock_service_url=f"http://127.0.0.1:{free_port()}",
        payment_service_url=f"http://127.0.0.1:{free_port()}",
        sold_out_memory_seconds=600, expiry_interval_seconds=3600,
        settle_interval_seconds=3600, orphan_interval_seconds=3600)
    async with running_app(noting_app(settings, "front", with_layer=True)) as front, \
            running_app(noting_app(settings, "route", with_layer=False)) as route_only:
        for running in (front, route_only):
            running.resources_as(Resources).admission.sold_out.remember(SOLD_OUT_PRODUCT, 1)
        yield BothWays(front.client, route_only.client)


def signed() -> dict[str, str]:
    return signed_identity_headers(int.from_bytes(os.urandom(4), "big") + 1, "s" * 32) | JSON


SAME_REQUESTS: list[tuple[str, bytes, dict[str, str]]] = [
    ("refused by the memory", order_body(product_id=SOLD_OUT_PRODUCT), {}),
    ("more than was refused", order_body(product_id=SOLD_OUT_PRODUCT, quantity=3), {}),
    ("a product the memory lets ask", order_body(product_id=ASKING_PRODUCT), {}),
    ("quantity a bool", order_body(product_id=SOLD_OUT_PRODUCT, quantity=True), {}),
    ("quantity a float", order_body(product_id=SOLD_OUT_PRODUCT, quantity=1.0), {}),
    ("quantity a string", order_body(product_id=SOLD_OUT_PRODUCT, quantity="1"), {}),
    ("quantity 0", order_body(product_id=SOLD_OUT_PRODUCT, quantity=0), {}),
    ("quantity 101", order_body(product_id=SOLD_OUT_PRODUCT, quantity=101), {}),
    ("product id past 2^53", order_body(product_id=2**53), {}),
    ("an extra field", order_body(product_id=SOLD_OUT_PRODUCT, note="x"), {}),
    ("a field missing", b'{"product_id": 7}', {}),
    ("a list", b"[7, 1]", {}),
    ("not JSON", b"{", {}),
    ("no body", b"", {}),
    ("too deep for json.loads", b"[" * 1000, {}),
    ("text/plain", order_body(product_id=SOLD_OUT_PRODUCT), {"content-type": "text/plain"}),
    ("not through the gateway", order_body(product_id=SOLD_OUT_PRODUCT), {"unsigned": ""}),
    ("a public caller", order_body(product_id=SOLD_OUT_PRODUCT), {"public": ""}),
    ("a forged signature", order_body(product_id=SOLD_OUT_PRODUCT), {"forged": ""}),
    ("an Idempotency-Key", order_body(product_id=SOLD_OUT_PRODUCT), {"Idempotency-Key": ""}),
]


def headers_for(extra: dict[str, str]) -> dict[str, str]:
    if "unsigned" in extra:
        return dict(JSON)
    if "public" in extra:
        return signed_identity_headers(None, None) | JSON
    if "forged" in extra:
        return signed_identity_headers(1, "s" * 32, key="another-key") | JSON
    if "Idempotency-Key" in extra:
        return signed() | {"Idempotency-Key": os.urandom(8).hex()}
    return signed() | extra


def answer_of(response: httpx.Response) -> tuple[int, str | None, object]:
    body = response.json()
    if response.headers["content-type"] == "application/problem+json":
        return response.status_code, body["code"], {k: v for k, v in body.items()
                                                      if k != "request_id"}
    return response.status_code, None, body


async def test_a_fast_answer_is_only_ever_the_one_the_route_gives(both_ways: BothWays) -> None:
    ROUTE_RUNS.clear()
    for what, body, extra in SAME_REQUESTS:
        by_front = await both_ways.front.post(ORDERS_PATH, content=body,
                                              headers=headers_for(extra))
        by_route = await both_ways.route_only.post(ORDERS_PATH, content=body,
                                                   headers=headers_for(extra))
        assert answer_of(by_front) == answer_of(by_route), what
    # The layer did answer some itself: the two refusals the memory knows, and nothing else.
    assert ROUTE_RUNS.count("route") - ROUTE_RUNS.count("front") == 2
