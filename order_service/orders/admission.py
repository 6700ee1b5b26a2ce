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

With the line (orders/line.py, docs/line.md), a request the route would take as it is (an
Idempotency-Key included) does not wait for a slot: while a slot of the product is free here and
nobody waits in its line (judged in Redis, in the same step that takes the place: whichever
replica they joined at), it takes the slot in front and goes on to the route with it, its place
admitted at once under a lease and given the route's answer; otherwise it takes a place in the
line and is answered 202 with its ticket (or, asking again, with the place it already has, or
that place's answer).

Anything else, including a request the memory would let ask, goes on to the route.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Scope

from order_service.orders.errors import LineFull, TooManyWaiting
from order_service.orders.ids import NotedId
from order_service.orders.line import FINAL_STATES, OrderLine, status_url, ticket_body
from order_service.orders.schemas import OrderCreate
from order_service.orders.scripts import Joined, NewPlace
from shared.dependencies import resource_in_scope
from shared.errors import PROBLEM_CONTENT_TYPE, RedisUnavailable, problem_from_error
from shared.fast_path import AfterWaiting, fast_path, is_json, parse_json
from shared.idempotency import HEADER as IDEMPOTENCY_HEADER
from shared.idempotency import (
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    StoredAnswer,
    is_valid_key,
)
from shared.identity import GatewayIdentity, signed_identity, signed_in_user
from shared.internal.stock import SoldOut
from shared.request_context import current_request_id
from shared.sale_metrics import OrderMetrics
from shared.sold_out import InFlightLimit, Slot, SlotTimeout, SoldOutMemory, Verdict

if TYPE_CHECKING:
    from order_service.orders.drain import LineDrain, Turn

ORDERS_PATH = "/api/v1/orders"
# Where the layer in front leaves the slot it waited for, for the route to pass on.
_SLOT_IN_SCOPE = "order_service.reserve_slot"
# Where it leaves the request's entry when it went straight on with a place in the line.
_ENTRY_IN_SCOPE = "order_service.line_entry"
# And the order id that place noted, for the route to reserve under.
_NOTED_IN_SCOPE = "order_service.noted_order_id"
_IDEMPOTENCY = IDEMPOTENCY_HEADER.lower()
Answer = TypeVar("Answer")


class OrderAdmission:
    def __init__(self, *, sold_out: SoldOutMemory, reserving: InFlightLimit,
                 metrics: OrderMetrics | None = None) -> None:
        self.sold_out = sold_out
        self.reserving = reserving
        # Every order decided, here in front of the router or by the service behind it.
        self.metrics = metrics or OrderMetrics()
        # The line and its drain, once the lifespan has built them (they decide through the
        # route's service, which is built with this object): without them the crowd waits for
        # a slot in front of the router.
        self.line: OrderLine | None = None
        self.drain: LineDrain | None = None

    def with_line(self, line: OrderLine, drain: LineDrain) -> None:
        self.line = line
        self.drain = drain

    # For the service

    async def reserve(self, product_id: int, quantity: int, *, slot: Slot | None,
                      ask: Callable[[], Awaitable[Answer]], resent: bool = False) -> Answer:
        """`ask()` (the reserve at stock_service) with a slot of the product, unless the memory
        refuses the order (SoldOut). `slot`: the one the layer in front waited for, if any.
        A SoldOut from `ask()` is remembered; no slot within the wait is TooManyWaiting.
        `resent`: the order may hold units already (its hold is asked for, whatever the memory
        says)."""
        verdict = Verdict.ASK if resent else self.sold_out.verdict(product_id, quantity)
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

    def answer_in_front(self, scope: Scope, headers: dict[str, str], order: OrderCreate,
                        key: str | None) -> ASGIApp | AfterWaiting | None:
        if self.line is not None and self.drain is not None:
            return self._line_in_front(scope, headers, order, key, self.line, self.drain)
        if key is not None:
            return None  # its stored answer is the route's to give
        refused = self.sold_out.still_refuses(order.product_id, order.quantity)
        if not refused and not self.reserving.busy(order.product_id):
            return None
        if signed_in_user(scope) is None:
            return None
        if refused:
            self.metrics.refused(SoldOut.code)
            return problem_from_error(SoldOut())
        turn = _Turn(self, scope, order)
        return AfterWaiting(then=turn.wait, after=turn.give_back)

    def _line_in_front(self, scope: Scope, headers: dict[str, str], order: OrderCreate,
                       key: str | None, line: OrderLine,
                       drain: LineDrain) -> ASGIApp | AfterWaiting | None:
        identity = signed_identity(scope)
        if identity is None or identity.user_id is None:
            return None
        entry = _LineEntry(self, line, drain, scope, order, identity, key)
        if self.sold_out.still_refuses(order.product_id, order.quantity):
            if key is not None:
                # Its place (its first request's, which may have died with its replica), or
                # its stored answer, the route's to give.
                return AfterWaiting(then=entry.find, after=entry.give_back)
            self.metrics.refused(SoldOut.code)
            return problem_from_error(SoldOut())
        return AfterWaiting(then=entry.enter, after=entry.give_back)


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


class _LineEntry:
    """One request in front of the router, with the line: straight on with a free slot, or a
    place in the line."""

    def __init__(self, admission: OrderAdmission, line: OrderLine, drain: LineDrain,
                 scope: Scope, order: OrderCreate, identity: GatewayIdentity,
                 key: str | None) -> None:
        self.admission = admission
        self.line = line
        self.drain = drain
        self.scope = scope
        self.order = order
        self.identity = identity
        self.key = key
        self.slot: Slot | None = None
        # The id its order reserves under if it goes straight on, noted with its place.
        self.order_id: int | None = None
        # A place that went straight on, and the route's answer to it (recorded by the route).
        self.ticket: str | None = None
        self.answer: StoredAnswer | None = None
        # Its turn among the product's answers here (orders/drain.py), once it went on.
        self.turn: Turn | None = None

    async def enter(self) -> ASGIApp | None:
        product_id = self.order.product_id
        await self._settle()
        mode = "join"
        if not self.drain.active(product_id):
            # A free slot here: straight on, unless the product's line has anyone waiting
            # (joined at any replica; judged in Redis, in the same step as the place).
            self.slot = await self.admission.reserving.try_take(product_id)
            if self.slot is not None:
                mode = "go"
                # Made before the place and noted with it, as the drain notes its places' ids:
                # if this replica dies after the reserve, the place decided again takes the
                # hold over instead of being refused by it (orders/ids.py NotedId).
                self.order_id = await self.drain.creation.ids.next()
        try:
            joined, place = await self._join(mode)
        except (RedisError, OSError):
            if self.slot is not None:
                # The line out of reach: the slot decides as it did before there was one.
                self._straight_on(None)
                return None
            return problem_from_error(RedisUnavailable())
        if joined.go:
            self._straight_on(joined.ticket)
            return None
        if self._first_still_running(joined):
            # The buyer's request that went straight on is still being decided: this one is
            # answered as before there was a line (its key in use; else the route's own rules,
            # one unpaid order per buyer, with the slot if it has one).
            if self._same_key(joined):
                self._give_slot_back()
                return problem_from_error(IdempotencyKeyInUse())
            if self.slot is not None:
                self._straight_on(None)
                return None
        if self.slot is not None:
            self.slot.give_back()  # someone waits: this one takes its place behind them
            self.slot = None
        if joined.ticket is None:
            return problem_from_error(LineFull(self.line.retry_after_seconds))
        if joined.record is None or joined.record.state not in FINAL_STATES:
            # A place waits (a buyer's retry finding its answered place leaves nothing to
            # drain: a drain started for it would send the next buyers into the line for
            # nothing while it looks).
            self.drain.start(product_id)
        return self._place(joined, place)

    async def _settle(self) -> None:
        """Waits until the request's arrival stamp is `settle_seconds` old: every request
        stamped before it that is still on its way has reached the line by then (if it was
        delayed less), so the line (and who goes straight on) follows the stamps."""
        settle, arrived_us = self.line.settle_seconds, self.identity.arrived_at_us
        if settle <= 0 or not arrived_us:
            return
        left = settle - (time.time() - arrived_us / 1e6)
        if left > 0:
            await asyncio.sleep(min(left, settle))

    async def find(self) -> ASGIApp | None:
        """A retry with its key of a product the memory says is sold out: the buyer's place,
        if its first request took one (it may have died with its replica), else the route."""
        try:
            joined, place = await self._join("find")
        except (RedisError, OSError):
            return None
        if joined.ticket is None:
            return None
        if self._first_still_running(joined):
            if self._same_key(joined):
                return problem_from_error(IdempotencyKeyInUse())
            return None
        return self._place(joined, place)

    @staticmethod
    def _first_still_running(joined: Joined) -> bool:
        """The buyer's place is one whose request went straight on and is still being decided
        (its lease running: its replica is alive)."""
        record = joined.record
        return record is not None and record.straight and record.state == "deciding" and \
            joined.leased

    def _same_key(self, joined: Joined) -> bool:
        return self.key is not None and joined.record is not None and \
            joined.record.key == self.key

    def _give_slot_back(self) -> None:
        if self.slot is not None:
            self.slot.give_back()
            self.slot = None

    async def _join(self, mode: str) -> tuple[Joined, NewPlace]:
        user_id = self.identity.user_id
        assert user_id is not None
        # Arrival at the gateway orders the line; a request that did not come through one
        # (a test, a tool on the service's port) arrives when it reaches this process.
        arrived_us = self.identity.arrived_at_us or time.time_ns() // 1000
        return await self.line.join(
            product_id=self.order.product_id, user_id=user_id, quantity=self.order.quantity,
            key=self.key, arrived_us=arrived_us, mode=mode, request_id=current_request_id(),
            order_id=self.order_id if mode == "go" else None)

    def _straight_on(self, ticket: str | None) -> None:
        """On to the route with the slot; `ticket`: its place, being decided under a lease (so
        a replica that dies deciding it leaves it to be decided again, and the buyer's retry
        with its key finds it), given the route's answer once the request is answered."""
        self.ticket = ticket
        if ticket is not None:
            self.turn = self.drain.went_straight_on(self.order.product_id, ticket)
            if self.order_id is not None:
                self.scope[_NOTED_IN_SCOPE] = NotedId(self.order_id, decided_before=False)
        self.scope[_SLOT_IN_SCOPE] = self.slot
        self.scope[_ENTRY_IN_SCOPE] = self

    def _place(self, joined: Joined, place: NewPlace) -> ASGIApp:
        product_id = self.order.product_id
        assert joined.ticket is not None
        record = joined.record
        if record is None:
            return self._waiting({"ticket": joined.ticket, "product_id": product_id,
                                  "position": joined.position, "state": "waiting"})
        if self.key is not None and record.key == self.key and \
                record.fingerprint != place.fingerprint:
            return problem_from_error(IdempotencyKeyReused())
        body = ticket_body(joined.ticket, product_id, record, joined.position)
        if body["state"] not in FINAL_STATES:
            return self._waiting(body)
        # Asked again with the key of a place already answered: that answer, as it was.
        if body["state"] == "ordered":
            return JSONResponse(body["order"], status_code=201)
        problem: dict[str, Any] = body["problem"]
        return JSONResponse(problem, status_code=int(problem["status"]),
                            media_type=PROBLEM_CONTENT_TYPE)

    def _waiting(self, body: dict[str, Any]) -> ASGIApp:
        return JSONResponse({**body, "status_url": status_url(body["ticket"])}, status_code=202,
                            headers={"Retry-After": str(self.line.retry_after_seconds)})

    def give_back(self) -> None:
        """Once the request is answered: the slot, if the route did not use it; a place that
        went straight on takes the route's answer (a 5xx: the place is forgotten)."""
        if self.slot is not None:
            self.slot.give_back()
        if self.ticket is not None and self.turn is not None:
            self.drain.straight_answered(self.order.product_id, self.ticket, self.answer,
                                         self.turn)
            self.ticket = self.turn = None


async def slot_taken_in_front(request: Request) -> Slot | None:
    """The route's dependency: the slot the layer in front waited for, to pass to the service."""
    slot = request.scope.get(_SLOT_IN_SCOPE)
    return slot if isinstance(slot, Slot) else None


async def order_id_noted_in_front(request: Request) -> NotedId | None:
    """The route's dependency: the order id a place that went straight on noted (JOIN), for
    the order to reserve under."""
    noted = request.scope.get(_NOTED_IN_SCOPE)
    return noted if isinstance(noted, NotedId) else None


def answered_in_front(scope: Scope, answer: StoredAnswer) -> None:
    """The route's answer (not a 5xx) to a request that went straight on with a place: the
    place's answer too (a double tap following the ticket, a retry with the key)."""
    entry = scope.get(_ENTRY_IN_SCOPE)
    if not isinstance(entry, _LineEntry) or answer.status >= 500:
        return
    code = answer.body.get("code") if isinstance(answer.body, dict) else None
    if code in (IdempotencyKeyInUse.code, IdempotencyKeyReused.code):
        return  # not an answer to the order: the place is forgotten, the key decides
    entry.answer = answer


def _decide(scope: Scope, headers: dict[str, str], body: bytes,
            _: re.Match[str]) -> ASGIApp | AfterWaiting | None:
    if not is_json(headers.get("content-type")):
        return None
    key = headers.get(_IDEMPOTENCY)
    if key is not None and not is_valid_key(key):
        return None  # the route's 422
    admission = resource_in_scope(scope, "admission", OrderAdmission)
    if admission is None:
        return None
    try:
        order = OrderCreate.model_validate(parse_json(body))  # as FastAPI validates the body
    except ValidationError:
        return None
    return admission.answer_in_front(scope, headers, order, key)


OrderAdmissionFront = fast_path(method="POST", path=re.escape(ORDERS_PATH), route=ORDERS_PATH,
                                decide=_decide, with_body=True)
