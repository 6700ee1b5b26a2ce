"""Creating an order: an id is made first (so the reserve is keyed by it), the units are reserved
at stock_service when admission lets the order ask (orders/admission.py), then the order is
inserted with the product's other new orders of that moment (orders/writer.py).

If the insert fails the hold is released; if the process dies in between, the orphan
reconciler (orders/effects.py) releases it (a hold with no order after `orphan_after`). A
refusal (sold_out, ...) costs one call to stock_service (one Lua call there) and no MySQL work
here, or nothing at all when admission answers it from memory.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from order_service.clients import StockClient
from order_service.orders.admission import OrderAdmission
from order_service.orders.errors import HoldGone, StockUnavailable, UnpaidOrderExists
from order_service.orders.ids import NotedId, OrderIds
from order_service.orders.models import UNPAID_ORDER_KEY
from order_service.orders.repository import NewOrder, OrderRepository
from order_service.orders.schemas import OrderCreate, OrderOut
from order_service.orders.writer import OrderWriter
from shared.clock import utcnow
from shared.db import Transactions
from shared.errors import DatabaseUnavailable, ProblemError
from shared.group_commit import WriterStopped
from shared.idempotency import (
    Claim,
    IdempotencyKeyReused,
    IdempotencyKeys,
    StoredAnswer,
    fingerprint,
)
from shared.internal.stock import Hold, PurchaseLimitExceeded
from shared.repository import is_duplicate_entry
from shared.sold_out import Slot

logger = logging.getLogger("order_service.orders")
# (user, product) pairs remembered at most: past it the memory starts again.
MAX_REMEMBERED_ORDERS = 100_000
# Of a create's time budget (ORDER_CREATE_BUDGET_SECONDS, below the gateway's upstream timeout):
# at most this share waits for a reserve slot, in front of the router or in it, and this much is
# left for the insert once the reserve is answered; the reserve call has the rest.
SLOT_WAIT_SHARE = 0.4
INSERT_SECONDS = 1.0


def create_time_budget(budget_seconds: float, call_timeout_seconds: float) -> tuple[float, float]:
    """(reserve slot wait, reserve call timeout), together within `budget_seconds`."""
    wait = min(call_timeout_seconds, budget_seconds * SLOT_WAIT_SHARE)
    return wait, max(min(call_timeout_seconds, budget_seconds - wait - INSERT_SECONDS), 0.1)


class OrderCreation:
    def __init__(self, *, transactions: Transactions[OrderRepository], admission: OrderAdmission,
                 stock: StockClient, ids: OrderIds, keys: IdempotencyKeys,
                 payment_ttl: timedelta, reserve_timeout_seconds: float | None = None,
                 budget_seconds: float | None = None, writer: OrderWriter | None = None,
                 orphan_after: timedelta = timedelta(seconds=60)) -> None:
        self.transactions = transactions
        # A hold left by a decision that died is taken over only while it is younger than half
        # the orphan sweep's bound (orders/effects.py): the sweep gives back holds that old with
        # no order, and must not give back one whose order is about to be written.
        self.take_over_within = orphan_after / 2
        self.reserve_timeout_seconds = reserve_timeout_seconds
        self.budget_seconds = budget_seconds
        self.admission = admission
        self.stock = stock
        self.ids = ids
        self.keys = keys
        self.payment_ttl = payment_ttl
        self.writer = writer or OrderWriter(transactions)
        # Buyers and products this process wrote an order for: only their next order pays a
        # read for an unpaid one before it takes a slot and a hold (MySQL's unique key is the
        # truth, whichever replica wrote the first).
        self._ordered_here: set[tuple[int, int]] = set()

    async def create(self, user_id: int, request: OrderCreate, idempotency_key: str | None,
                     *, slot: Slot | None = None, noted: NotedId | None = None) -> StoredAnswer:
        """201 and the order, or the refusal; with a key, at most once and the same again.
        `slot`: the reserve slot admission's layer in front already waited for, if any.

        Answered within `budget_seconds` of the request's start (its wait for a slot in front
        included): the slot wait and the reserve end in time by their own timeouts; an insert
        still running then goes on, and the caller gets StillWorking (503), the key staying
        claimed until the insert ends (its retry then gets the order, or a refusal-free retry
        if the insert failed and gave the units back)."""
        answer_within = None
        if self.budget_seconds is not None:
            started = slot.waited_since if slot is not None else time.monotonic()
            answer_within = self.budget_seconds - (time.monotonic() - started)
        return await self.keys.once(
            user_id, idempotency_key, request,
            lambda claim: self._create(user_id, request, claim, slot, noted),
            made_before=self._order_made_with, answer_within=answer_within)

    async def create_in_line(self, user_id: int, request: OrderCreate, key: str, *,
                             slot: Slot | None, again: bool,
                             noted: NotedId | None = None) -> OrderOut:
        """A place of the line (orders/drain.py) decided: as create() with `key`, but without
        claiming it in Redis (one replica at a time decides a place: its lease says so). A place
        decided `again` (its first replica died or stalled) first looks for the order the key
        made; MySQL's unique keys stop a second one if the first decision is still running."""
        claim = Claim(user_id, key, fingerprint(request.model_dump(mode="json"),
                                                self.keys.fingerprint_secret))
        if again:
            made = await self._order_made_with(claim)
            if made is not None:
                return made
        return await self._create(user_id, request, claim, slot, noted)

    async def _create(self, user_id: int, request: OrderCreate, claim: Claim | None,
                      slot: Slot | None, noted: NotedId | None = None) -> OrderOut:
        """The order decided once (a replayed key's answer is not counted again)."""
        try:
            order = await self._decide(user_id, request, claim, slot, noted)
        except ProblemError as refusal:
            self.admission.metrics.refused(refusal.code, failed=refusal.status >= 500)
            raise
        self.admission.metrics.created()
        return order

    async def _decide(self, user_id: int, request: OrderCreate, claim: Claim | None,
                      slot: Slot | None, noted: NotedId | None = None) -> OrderOut:
        taking_over = noted is not None and noted.decided_before

        async def reserve() -> OrderOut:
            created_at = utcnow()
            expires_at = created_at + self.payment_ttl

            async def hold_under(order_id: int, *, resent: bool) -> Hold:
                return await self.stock.reserve(
                    product_id=request.product_id, order_id=order_id, user_id=user_id,
                    quantity=request.quantity, expires_at=expires_at,
                    timeout=self.reserve_timeout_seconds, resent=resent)

            order_id = noted.order_id if noted is not None else await self.ids.next()
            try:
                hold: Hold | None = await hold_under(order_id, resent=taking_over)
            except HoldGone:
                if not taking_over:
                    raise
                hold = None  # granted and given back before the ledger heard of it
            if taking_over and (hold is None or not await self._taken_over(hold)):
                order_id = await self.ids.next()
                if noted is not None and noted.note_again is not None:
                    # Noted before the reserve, as the first id was: a decision dying after it
                    # leaves this hold to the next one to take over.
                    await noted.note_again(order_id)
                hold = await hold_under(order_id, resent=False)
            assert hold is not None  # None only when taking over, and then reserved afresh
            return OrderOut(id=order_id, user_id=user_id, product_id=request.product_id,
                            quantity=request.quantity, unit_price=hold.unit_price,
                            amount=hold.unit_price * request.quantity, status="pending_payment",
                            expires_at=expires_at, created_at=created_at)

        if (user_id, request.product_id) in self._ordered_here:
            first = await self._unless_unpaid(user_id, request.product_id, claim)
            if first is not None:
                return first
        try:
            order = await self.admission.reserve(request.product_id, request.quantity,
                                                 slot=slot, ask=reserve, resent=taking_over)
        except PurchaseLimitExceeded:
            # The limit counts the unpaid order too: the answer names the rule that refused.
            first = await self._unless_unpaid(user_id, request.product_id, claim)
            if first is not None:
                return first
            raise
        return await self.insert(order, claim)

    async def _taken_over(self, hold: Hold) -> bool:
        """Whether the hold an earlier decision of the place left (answered to its resent
        reserve) is this order's now. Not if the orphan sweep gave it back meanwhile, nor if it
        is too near the sweep's bound: then it is given back here (no order was written under
        its id: the place's key found none), and the order reserves afresh under a new id."""
        if hold.state != "held":
            return False
        if datetime.now(UTC) - hold.created_at < self.take_over_within:
            return True
        await self.stock.release(product_id=hold.product_id, order_id=hold.order_id)
        self.admission.units_back(hold.product_id)
        return False

    async def _unless_unpaid(self, user_id: int, product_id: int,
                             claim: Claim | None) -> OrderOut | None:
        """Raises UnpaidOrderExists if the buyer has an unpaid order of the product; returns
        that order instead when the same Idempotency-Key made it (a retry whose first answer
        was lost); None when there is none."""
        async with self.transactions.read() as orders:
            found = await orders.unpaid_order(user_id, product_id)
        if found is None:
            return None
        if claim is not None and found[1] == claim.key:
            return await self._first_order_of(claim)
        raise UnpaidOrderExists()

    async def insert(self, order: OrderOut, claim: Claim | None) -> OrderOut:
        """The order whose units are held, written; the hold is released if it cannot be."""
        try:
            await self.writer.write(NewOrder(
                order, idempotency_key=claim.key if claim else None,
                idempotency_fingerprint=claim.fingerprint if claim else None))
        except IntegrityError as error:
            # Refused by the database: nothing of it was written.
            await self._release_quietly(order.product_id, order.id)
            if is_duplicate_entry(error) and UNPAID_ORDER_KEY in str(error.orig):
                # Another unpaid order of the buyer's was written first (a racing create).
                first = await self._unless_unpaid(order.user_id, order.product_id, claim)
                if first is None:  # paid or cancelled since; it was there when this one was not
                    raise UnpaidOrderExists() from None
                return first
            # The (user, Idempotency-Key) guard: the key made an order before.
            if claim is not None and is_duplicate_entry(error):
                return await self._first_order_of(claim)
            raise
        except (SQLAlchemyError, OSError, WriterStopped) as error:
            # The commit may have landed before the error (a connection lost during COMMIT):
            # the units go back only once the order is known not to exist.
            if not await self._written_or_released(order.product_id, order.id):
                raise DatabaseUnavailable() from error
        # Not caught: a cancelled caller (its order is still written, shielded in the writer;
        # if the process stops first, the orphan reconciler releases the hold).
        if len(self._ordered_here) >= MAX_REMEMBERED_ORDERS:
            self._ordered_here.clear()
        self._ordered_here.add((order.user_id, order.product_id))
        return order

    async def _first_order_of(self, claim: Claim) -> OrderOut:
        """The key made an order before (Redis had lost the key): that order is the answer."""
        order = await self._order_made_with(claim)
        if order is None:
            raise DatabaseUnavailable()
        return order

    async def _order_made_with(self, claim: Claim) -> OrderOut | None:
        async with self.transactions.read() as orders:
            found = await orders.by_idempotency_key(claim.user_id, claim.key)
        if found is None:
            return None
        order, first_fingerprint = found
        if first_fingerprint != claim.fingerprint:
            raise IdempotencyKeyReused()
        return order

    async def _written_or_released(self, product_id: int, order_id: int) -> bool:
        """After a failed insert: True if the order was written after all; else its hold is
        released (now, or by the orphan reconciler when the database cannot be asked)."""
        try:
            async with self.transactions.read() as orders:
                written = bool(await orders.existing_ids([order_id]))
        except (SQLAlchemyError, OSError):
            return False
        if not written:
            await self._release_quietly(product_id, order_id)
        return written

    async def _release_quietly(self, product_id: int, order_id: int) -> None:
        try:
            await self.stock.release(product_id=product_id, order_id=order_id)
            self.admission.units_back(product_id)
        except StockUnavailable:
            # The orphan reconciler releases it: a hold with no order is found and given back.
            logger.warning("could not release the hold of an order not created",
                           extra={"order_id": order_id})

    async def drain(self, timeout: float) -> None:
        await self.keys.drain(timeout=timeout)
        await self.writer.drain(timeout=timeout)
