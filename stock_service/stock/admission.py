"""Admission to stock_service's two hot routes: what they answer from this process's memory, for
the services (stock/holds.py, stock/catalog.py) and for the layers in front of FastAPI
(shared/fast_path.py) alike. One object (StockAdmission) owns:

- the sold-out memory: a product the reserve script refused as sold out is refused again
  without a Lua call for `sold_out_memory` seconds (shared/sold_out.py SoldOutMemory);
- the view memory: the product's live view (the public stock level) read from Redis at most
  once per `view_memory` seconds, its clock moved on with ours in between, and forgotten at
  once when this process changes the product.

The layers in front answer, in the route's own words, only a request the route would take as it
is: a reserve the memory refuses (409 sold_out), for a caller the internal route believes and a
body HoldRequest takes, unless it is sent again (shared/http.py RESENT_HEADER: its order may hold
units, and only the script answers it as a replay); the public stock level of a product whose
view is remembered and shows it on sale. Everything else (a memory that lets the request ask, no
remembered view, a product gone or being rebuilt, any doubt about the request) goes on to the
route. order_service sends its reserves as batches (POST .../holds), which have no layer in
front: a batch is one request for many reserves, and the service refuses it from the same memory
(stock/holds.py reserve_many).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import replace

from pydantic import ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Scope

from shared.contracts import MAX_ID
from shared.dependencies import resource_in_scope
from shared.errors import problem_from_error
from shared.fast_path import fast_path, is_json, parse_json
from shared.http import RESENT_HEADER
from shared.identity import signed_by_the_deployment
from shared.internal.stock import PREFIX, HoldRequest, SoldOut
from shared.sale_window import sale_state_at_ms
from shared.sold_out import SoldOutMemory
from stock_service.stock.schemas import StockLevel
from stock_service.stock.scripts import LiveView, StockScripts

# Views remembered at most, per process: past it the memory starts again.
MAX_VIEWS = 10_000


def level_of(product_id: int, view: LiveView) -> StockLevel:
    return StockLevel(product_id=product_id, remaining=view.remaining,
                      sale_state=sale_state_at_ms(view.opens_ms, view.closes_ms, view.now_ms))


class StockAdmission:
    def __init__(self, *, scripts: StockScripts, sold_out_memory: float = 0.0,
                 view_memory: float = 0.0) -> None:
        self.scripts = scripts
        self.sold_out = SoldOutMemory(sold_out_memory)
        self.view_memory = view_memory
        self._views: dict[int, tuple[LiveView, float]] = {}
        # Counts the changes made through this process: a view read while one was made may
        # predate it, and is not remembered.
        self._changes = 0
        # Told of every change too (stock/live.py publishes it).
        self.on_level_change: Callable[[int, bool], None] = lambda product_id, sold_out: None

    def changed(self, product_id: int, *, sold_out: bool = False) -> None:
        """The product's live state changed through this process (a hold, a release, a
        registration, a rebuild): its next read here sees it; other processes see it within
        `view_memory`. `sold_out`: the change took the last units."""
        self._changes += 1
        self._views.pop(product_id, None)
        self.on_level_change(product_id, sold_out)

    async def live_view(self, product_id: int) -> LiveView:
        """The product's live view, read from Redis at most once per `view_memory` here. Its
        clock moves on with ours in between, so the sale still opens at its exact millisecond
        (by Redis's clock as last read)."""
        remembered = self._views.get(product_id)
        now = time.monotonic()
        if remembered is not None and now - remembered[1] < self.view_memory:
            view, read_at = remembered
            return replace(view, now_ms=view.now_ms + int((now - read_at) * 1000))
        changes = self._changes
        view = await self.scripts.view(product_id)
        if self.view_memory > 0 and changes == self._changes:
            if len(self._views) > MAX_VIEWS:
                self._views.clear()
            self._views[product_id] = (view, now)
        return view

    def remembered_level(self, product_id: int) -> StockLevel | None:
        """The public level without a Redis read, when this process read the product's view
        less than `view_memory` ago and it shows a product on sale; else None (the route asks)."""
        remembered = self._views.get(product_id)
        if remembered is None:
            return None
        view, read_at = remembered
        elapsed = time.monotonic() - read_at
        if elapsed >= self.view_memory or view.rebuilding or not view.active:
            return None
        return level_of(product_id, replace(view, now_ms=view.now_ms + int(elapsed * 1000)))


_ID = "([1-9][0-9]{0,15})"
_RESENT = RESENT_HEADER.lower()


def _id(text: str) -> int | None:
    value = int(text)
    return value if value <= MAX_ID else None


def _refuse_reserve(scope: Scope, headers: dict[str, str], body: bytes,
                    match: re.Match[str]) -> ASGIApp | None:
    admission = resource_in_scope(scope, "admission", StockAdmission)
    product_id, order_id = _id(match[1]), _id(match[2])
    if admission is None or product_id is None or order_id is None or _RESENT in headers:
        return None
    if not is_json(headers.get("content-type")):
        return None
    try:
        request = HoldRequest.model_validate(parse_json(body))  # as FastAPI validates the body
    except ValidationError:
        return None
    if not admission.sold_out.still_refuses(product_id, request.quantity):
        return None
    if not signed_by_the_deployment(scope):
        return None
    return problem_from_error(SoldOut())


def _remembered_level(scope: Scope, headers: dict[str, str], body: bytes,
                      match: re.Match[str]) -> ASGIApp | None:
    admission = resource_in_scope(scope, "admission", StockAdmission)
    product_id = _id(match[1])
    if admission is None or product_id is None:
        return None
    level = admission.remembered_level(product_id)
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
