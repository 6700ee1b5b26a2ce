"""The crowd's answer without the framework (shared/fast_path.py).

At a sale's opening nearly every order is for a product the sold-out memory already refuses, or
soon will. `POST /api/v1/orders` is looked at here when it comes from a signed-in caller (the
gateway's signature checked as the route checks it), without an Idempotency-Key (a keyed
order's answer is stored, which the route does), with a JSON body that is exactly
`{"product_id": int, "quantity": int}` within the contract's bounds:

- for a product the memory refuses right now, it is answered 409 sold_out here;
- while every reserve slot of the product is taken (the opening's crowd behind the first
  reserves), it waits for its turn here instead of in the route, in the same queue: with its
  slot it goes on to the route (which uses that slot), or is answered 409 here if the memory
  has learnt meanwhile that the product is sold out; a wait past the route's own bound is the
  route's 503.

Anything else, including a request the memory would let ask, goes on to the route.
"""

from __future__ import annotations

import re
from functools import partial

from starlette.types import ASGIApp, Scope

from order_service.orders.errors import TooManyWaiting
from order_service.orders.service import OrdersService
from shared.contracts import MAX_ID
from shared.dependencies import RESOURCES_STATE_KEY
from shared.errors import Unauthorized, problem_from_error
from shared.fast_path import AfterWaiting, fast_path, is_json, parse_json
from shared.idempotency import HEADER as IDEMPOTENCY_HEADER
from shared.identity import IDENTITY_KEY_STATE, verify_identity
from shared.internal.stock import SoldOut

ORDERS_PATH = "/api/v1/orders"
_IDEMPOTENCY = IDEMPOTENCY_HEADER.lower()
_FIELDS = {"product_id", "quantity"}


def _decide(scope: Scope, headers: dict[str, str], body: bytes,
            _: re.Match[str]) -> ASGIApp | AfterWaiting | None:
    if _IDEMPOTENCY in headers or not is_json(headers.get("content-type")):
        return None
    order = _order(body)
    state = scope.get("state", {})
    resources = state.get(RESOURCES_STATE_KEY)
    key = state.get(IDENTITY_KEY_STATE)
    if order is None or resources is None or key is None:
        return None
    orders = resources.orders
    product_id, quantity = order
    if orders.sold_out.still_refuses(product_id, quantity):
        return problem_from_error(SoldOut()) if _signed_in(headers, key) else None
    if orders.reserving.busy(product_id) and _signed_in(headers, key):
        return AfterWaiting(then=partial(_after_turn, orders, product_id, quantity),
                            after=orders.reserving.give_back_turn)
    return None


async def _after_turn(orders: OrdersService, product_id: int, quantity: int) -> ASGIApp | None:
    """The crowd behind the reserves in flight waits for its turn here, out of the framework,
    in the same queue as the route's: the slot it gets is the one the route then uses. Once
    the memory has learnt the product is sold out, each turn is a refusal given here."""
    if not await orders.reserving.take_turn(product_id):
        return problem_from_error(TooManyWaiting())  # as the route's own wait ends
    if orders.sold_out.still_refuses(product_id, quantity):
        orders.reserving.give_back_turn()  # now, for the next in the queue, not after the send
        return problem_from_error(SoldOut())
    return None


def _signed_in(headers: dict[str, str], key: bytes) -> bool:
    """The gateway signed the identity as the route checks it, for a user (on any doubt the
    route answers, in its own words)."""
    try:
        identity = verify_identity(headers, key)
    except Unauthorized:
        return False
    return identity is not None and identity.user_id is not None


def _order(body: bytes) -> tuple[int, int] | None:
    """(product_id, quantity) of a body OrderCreate would take as it is, else None."""
    parsed = parse_json(body)
    if not isinstance(parsed, dict) or parsed.keys() != _FIELDS:
        return None
    product_id, quantity = parsed["product_id"], parsed["quantity"]
    if type(product_id) is not int or type(quantity) is not int:  # bool is an int too
        return None
    if not (1 <= product_id <= MAX_ID and 1 <= quantity <= 100):
        return None
    return product_id, quantity


SoldOutFastPath = fast_path(method="POST", path=re.escape(ORDERS_PATH), route=ORDERS_PATH,
                            decide=_decide, with_body=True)
