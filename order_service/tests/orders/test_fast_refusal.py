"""The layer in front of the router (orders/fast_refusal.py) on its own: what it answers itself
and what it must hand on to the route untouched. The route's side (the same answer either
way) is tested through a real order_service in test_router.py."""

from __future__ import annotations

import json
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from order_service.orders.fast_refusal import ORDERS_PATH, SoldOutFastPath
from shared.dependencies import RESOURCES_STATE_KEY
from shared.fast_path import MAX_BODY
from shared.identity import IDENTITY_KEY_STATE
from shared.metrics import route_template
from shared.sold_out import SoldOutMemory
from shared.testing.identity import TEST_IDENTITY_SIGNING_KEY, signed_identity_headers

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
               path: str = ORDERS_PATH) -> tuple[int, dict[str, Any] | None, Downstream]:
    downstream = Downstream()
    layer = SoldOutFastPath(downstream)
    if headers is None:
        headers = signed_identity_headers(1, "s" * 32) | JSON
    chunks = [body] if isinstance(body, bytes) else list(body)
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
        "state": {RESOURCES_STATE_KEY: SimpleNamespace(orders=SimpleNamespace(sold_out=memory)),
                  IDENTITY_KEY_STATE: TEST_IDENTITY_SIGNING_KEY.encode()},
    }
    await layer(scope, receive, send)
    status = sent[0]["status"]
    problem = json.loads(sent[1]["body"]) if status != 299 else None
    if problem is not None:
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
    signed_identity_headers(1, "s" * 32, key="another-key") | JSON,  # a forged signature
    signed_identity_headers(1, "s" * 32) | JSON | {"Idempotency-Key": "k1"},  # stored by the route
])
async def test_a_caller_the_route_must_see_goes_to_the_route(headers: dict[str, str]) -> None:
    status, _, downstream = await call(refusing(), body=order_body(), headers=headers)
    assert (status, downstream.bodies) == (299, [order_body()])


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
