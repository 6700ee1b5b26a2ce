"""The crowd's answer without the framework (shared/fast_path.py).

At a sale's opening nearly every order is for a product the sold-out memory already refuses.
`POST /api/v1/orders` is answered here when it comes from a signed-in caller (the gateway's
signature checked as the route checks it), without an Idempotency-Key (a keyed order's answer is
stored, which the route does), with a JSON body that is exactly `{"product_id": int,
"quantity": int}` within the contract's bounds, for a product the memory refuses right now. Anything else,
including a request the memory would let ask, goes on to the route.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Scope

from shared.contracts import MAX_ID
from shared.dependencies import RESOURCES_STATE_KEY
from shared.errors import Unauthorized, problem_from_error
from shared.fast_path import fast_path, is_json, parse_json
from shared.idempotency import HEADER as IDEMPOTENCY_HEADER
from shared.identity import IDENTITY_KEY_STATE, verify_identity
from shared.internal.stock import SoldOut

ORDERS_PATH = "/api/v1/orders"
_IDEMPOTENCY = IDEMPOTENCY_HEADER.lower()
_FIELDS = {"product_id", "quantity"}


def _decide(scope: Scope, headers: dict[str, str], body: bytes,
            _: re.Match[str]) -> ASGIApp | None:
    if _IDEMPOTENCY in headers or not is_json(headers.get("content-type")):
        return None
    order = _order(body)
    state = scope.get("state", {})
    resources = state.get(RESOURCES_STATE_KEY)
    key = state.get(IDENTITY_KEY_STATE)
    if order is None or resources is None or key is None:
        return None
    if not resources.orders.sold_out.still_refuses(*order):
        return None
    try:
        identity = verify_identity(headers, key)
    except Unauthorized:
        return None  # the route says so, in its words
    if identity is None or identity.user_id is None:
        return None
    return problem_from_error(SoldOut())


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
