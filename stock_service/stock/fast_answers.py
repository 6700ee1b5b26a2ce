"""The two answers stock_service gives most at a sale's opening, given in front of the router
(shared/fast_path.py):

- a reserve for a product the sold-out memory refuses right now: 409 sold_out, for a caller
  the internal route would believe (the deployment's signature) and a body HoldRequest takes;
- the public stock level of a product whose live view this process read less than
  STOCK_VIEW_MEMORY_SECONDS ago, when that view shows a product on sale.

Everything else (a memory that would let the request ask, no remembered view, a product gone
or being rebuilt, any doubt about the request) goes on to the route.
"""

from __future__ import annotations

import re

from pydantic import ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Scope

from shared.contracts import MAX_ID
from shared.dependencies import RESOURCES_STATE_KEY
from shared.errors import Unauthorized, problem_from_error
from shared.fast_path import fast_path, is_json, parse_json
from shared.identity import IDENTITY_KEY_STATE, verify_identity
from shared.internal.stock import PREFIX, HoldRequest
from stock_service.stock.errors import SoldOut

_ID = "([1-9][0-9]{0,15})"


def _id(text: str) -> int | None:
    value = int(text)
    return value if value <= MAX_ID else None


def _refuse_reserve(scope: Scope, headers: dict[str, str], body: bytes,
                    match: re.Match[str]) -> ASGIApp | None:
    state = scope.get("state", {})
    resources = state.get(RESOURCES_STATE_KEY)
    key = state.get(IDENTITY_KEY_STATE)
    product_id, order_id = _id(match[1]), _id(match[2])
    if resources is None or key is None or product_id is None or order_id is None:
        return None
    if not is_json(headers.get("content-type")):
        return None
    try:
        request = HoldRequest.model_validate(parse_json(body))  # as FastAPI validates the body
    except ValidationError:
        return None
    if not resources.stock.sold_out.still_refuses(product_id, request.quantity):
        return None
    try:
        if verify_identity(headers, key) is None:
            return None
    except Unauthorized:
        return None
    return problem_from_error(SoldOut())


def _remembered_level(scope: Scope, headers: dict[str, str], body: bytes,
                      match: re.Match[str]) -> ASGIApp | None:
    resources = scope.get("state", {}).get(RESOURCES_STATE_KEY)
    product_id = _id(match[1])
    if resources is None or product_id is None:
        return None
    level = resources.stock.remembered_level(product_id)
    if level is None:
        return None
    return Response(level.model_dump_json(), media_type="application/json")


ReserveRefusal = fast_path(
    method="PUT", path=re.escape(PREFIX) + f"/products/{_ID}/holds/{_ID}",
    route=PREFIX + "/products/{product_id}/holds/{order_id}", decide=_refuse_reserve,
    with_body=True)
RememberedLevel = fast_path(
    method="GET", path=f"/api/v1/products/{_ID}/stock", route="/api/v1/products/{product_id}/stock",
    decide=_remembered_level, with_body=False)
