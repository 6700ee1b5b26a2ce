"""Admission to the order path: which orders may ask stock_service now, which wait, and which are
answered at once. One object (OrderAdmission) owns it, for the route's service
(orders/creation.py) and for the layer in front of FastAPI (shared/fast_path.py) alike:

- the sold-out memory: a product stock_service refused as sold out is refused again without
  asking for `sold_out_memory` seconds (shared/sold_out.py SoldOutMemory);
- the reserve slots: at most `reserves_in_flight` reserves of one product are in flight at
  once, so a crowd that arrives all at once waits for the first answers instead of all asking
  before they come (shared/sold_out.py InFlightLimit);
- the cheap answers, given in front of the router to a request the route would take as it is
  (the route's own OrderCreate validates the body; the caller is signed in as CurrentUser
  checks; no Idempotency-Key, whose answer the route stores): 409 sold_out for a product the
  memory refuses; while every slot of the product is taken, the wait for a slot, after which
  the request is refused here if the memory has learnt meanwhile that the product is sold out,
  or goes on to the route with its slot (handed on in the request's scope and passed to the
  service as an argument: one wait, one place in the queue).

Anything else, including a request the memory would let ask, goes on to the route.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi import Request
from pydantic import ValidationError
from starlette.types import ASGIApp, Scope

from order_service.orders.errors import TooManyWaiting
from order_service.orders.schemas import OrderCreate
from shared.dependencies import resource_in_scope
from shared.errors import problem_from_error
from shared.fast_path import AfterWaiting, fast_path, is_json, parse_json
from shared.idempotency import HEADER as IDEMPOTENCY_HEADER
from shared.identity import signed_in_user
from shared.internal.stock import SoldOut
from shared.sale_metrics import OrderMetrics
from shared.sold_out import InFlightLimit, Slot, SlotTimeout, SoldOutMemory, Verdict

ORDERS_PATH = "/api/v1/orders"
# Where the layer in front leaves the slot it waited for, for the route to pass on.
_SLOT_IN_SCOPE = "order_service.reserve_slot"
_IDEMPOTENCY = IDEMPOTENCY_HEADER.lower()
Answer = TypeVar("Answer")


class OrderAdmission:
    def __init__(self, *, sold_out: SoldOutMemory, reserving: InFlightLimit,
                 metrics: OrderMetrics | None = None) -> None:
        self.sold_out = sold_out
        self.reserving = reserving
        # Every order decided, here in front of the router or by the service behind it.
        self.metrics = metrics or OrderMetrics()

    # For the service

    async def reserve(self, product_id: int, quantity: int, *, slot: Slot | None,
                      ask: Callable[[], Awaitable[Answer]]) -> Answer:
        """`ask()` (the reserve at stock_service) with a slot of the product, unless the memory
        refuses the order (SoldOut). `slot`: the one the layer in front waited for, if any.
        A SoldOut from `ask()` is remembered; no slot within the wait is TooManyWaiting."""
        verdict = self.sold_out.verdict(product_id, quantity)
        if verdict is Verdict.REFUSE:
            raise SoldOut()
        asked = False
        try:
            async with self.reserving.slot(product_id, taken=slot):
                # Learnt while this one waited its turn; never for the order chosen to ask, and
                # never remembered again (only stock_service's answer re-arms the memory).
                if verdict is Verdict.ASK or not self.sold_out.still_refuses(product_id,
                                                                                quantity):
                    answer = await ask()
                    asked = True
        except SoldOut:
            self.sold_out.remember(product_id, quantity)
            raise
        except SlotTimeout:
            raise TooManyWaiting() from None
        if not asked:
            raise SoldOut()
        self.sold_out.forget(product_id)
        return answer

    def units_back(self, product_id: int) -> None:
        """Units of the product came back through this process: buyable here at once, not
        after the memory lapses."""
        self.sold_out.forget(product_id)

    # For the layer in front of the router

    def answer_in_front(self, scope: Scope, headers: dict[str, str],
                        order: OrderCreate) -> ASGIApp | AfterWaiting | None:
        refused = self.sold_out.still_refuses(order.product_id, order.quantity)
        if not refused and not self.reserving.busy(order.product_id):
            return None
        if signed_in_user(scope, headers) is None:
            return None
        if refused:
            self.metrics.refused(SoldOut.code)
            return problem_from_error(SoldOut())
        turn = _Turn(self, scope, order)
        return AfterWaiting(then=turn.wait, after=turn.give_back)


class _Turn:
    """One request's wait for a slot in front of the router, in the same queue as the route's."""

    def __init__(self, admission: OrderAdmission, scope: Scope, order: OrderCreate) -> None:
        self.admission = admission
        self.scope = scope
        self.order = order
        self.slot: Slot | None = None

    async def wait(self) -> ASGIApp | None:
        """The refusal given here once the turn comes, or None: on to the route, with the slot
        left in the scope for it."""
        product_id, quantity = self.order.product_id, self.order.quantity
        self.slot = await self.admission.reserving.take_turn(product_id)
        if self.slot is None:
            self.admission.metrics.refused(TooManyWaiting.code, failed=True)
            return problem_from_error(TooManyWaiting())  # as the route's own wait ends
        if self.admission.sold_out.still_refuses(product_id, quantity):
            self.slot.give_back()  # now, for the next in the queue, not after the send
            self.admission.metrics.refused(SoldOut.code)
            return problem_from_error(SoldOut())
        self.scope[_SLOT_IN_SCOPE] = self.slot
        return None

    def give_back(self) -> None:
        """Once the request is answered: the slot, if the route did not use it."""
        if self.slot is not None:
            self.slot.give_back()


async def slot_taken_in_front(request: Request) -> Slot | None:
    """The route's dependency: the slot the layer in front waited for, to pass to the service."""
    slot = request.scope.get(_SLOT_IN_SCOPE)
    return slot if isinstance(slot, Slot) else None


def _decide(scope: Scope, headers: dict[str, str], body: bytes,
            _: re.Match[str]) -> ASGIApp | AfterWaiting | None:
    if _IDEMPOTENCY in headers or not is_json(headers.get("content-type")):
        return None
    admission = resource_in_scope(scope, "admission", OrderAdmission)
    if admission is None:
        return None
    try:
        order = OrderCreate.model_validate(parse_json(body))  # as FastAPI validates the body
    except ValidationError:
        return None
    return admission.answer_in_front(scope, headers, order)


OrderAdmissionFront = fast_path(method="POST", path=re.escape(ORDERS_PATH), route=ORDERS_PATH,
                                decide=_decide, with_body=True)
