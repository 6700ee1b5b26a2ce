"""Typed clients of the services order_service calls (stock_service, payment_service), over
shared.http's pooled aiohttp sessions built in the lifespan. A call that cannot be made, or is
answered with a 5xx, raises StockUnavailable / ServiceCallFailed; a refusal raises the
contract's problem (sold_out, ...), as the client of this API would see it.

Reserves go in batches: those asked for one product in one turn of the event loop are sent as
one call (POST .../holds), each caller answered with its own hold or refusal; while a product's
batch is in flight, the reserves asked meanwhile wait and go together in the next. At an opening the
order path decides a few dozen places at once; a call each cost stock_service its framework and
its own Lua call per reserve, and each reply waited behind the others' on both busy loops
(`make load`: 54 ms from the reserve sent to its answer, of which stock_service's work was 33).
"""

from __future__ import annotations

import asyncio
import contextvars
from datetime import datetime, timedelta
from typing import Literal

from order_service.orders.errors import HoldGone, StockUnavailable
from shared.batching import FlushPerTurn
from shared.errors import ProblemError
from shared.http import ServiceCallFailed, ServiceClient, ServiceResponse
from shared.internal.payments import NO_CHARGE, PaymentView, by_order_path
from shared.internal.stock import (
    HELD_HOLDS_PATH,
    HOLD_NOT_FOUND,
    MAX_HOLD_BATCH,
    REFUSALS,
    Hold,
    HoldAnswer,
    HoldAsk,
    HoldBatchAnswer,
    HoldPage,
    hold_path,
    holds_path,
    refusal_code,
)
from shared.schemas import to_utc_z

# What became of a paid order's hold: sold, too late (its units went back), or never there.
CommitOutcome = Literal["committed", "released", "missing"]


def _refusal(status: int, code: str | None, detail: str | None) -> ProblemError:
    """The stock contract's problem for a reserve's refusal (the detail passed on)."""
    if status == 503:
        return StockUnavailable()
    if code == HOLD_NOT_FOUND:
        return HoldGone(f"stock_service answered {status} {code}.")
    refusal = refusal_code(code)
    if refusal is not None:
        return REFUSALS[refusal](detail)
    return StockUnavailable(f"stock_service answered {status} {code}.")


def _detail(response: ServiceResponse) -> str | None:
    detail = response.body.get("detail") if isinstance(response.body, dict) else None
    return detail if isinstance(detail, str) else None


class _HoldBatch:
    """Reserves of one product sent in one call, and each asker's future."""

    def __init__(self) -> None:
        self.asks: list[HoldAsk] = []
        self.answers: dict[int, asyncio.Future[HoldAnswer]] = {}
        # The longest of the askers' timeouts; None (the client's default) if any gave none.
        self.timeout: float | None = 0.0

    def add(self, ask: HoldAsk, timeout: float | None,
            future: asyncio.Future[HoldAnswer]) -> None:
        self.asks.append(ask)
        self.timeout = None if timeout is None or self.timeout is None \
            else max(self.timeout, timeout)
        self.answers[ask.order_id] = future

    def takes(self, order_id: int) -> bool:
        return order_id not in self.answers and len(self.asks) < MAX_HOLD_BATCH

    def answer(self, answers: list[HoldAnswer]) -> None:
        for answer in answers:
            future = self.answers.pop(answer.order_id, None)
            if future is not None and not future.done():
                future.set_result(answer)
        self.fail(StockUnavailable("stock_service left a reserve of the batch unanswered."))

    def fail(self, error: StockUnavailable) -> None:
        for future in self.answers.values():
            if not future.done():
                future.set_exception(StockUnavailable(error.detail))
        self.answers.clear()


class _ProductReserves(FlushPerTurn):
    """The reserves of one product: those asked while its batch is in flight go in the next,
    sent when that one is answered. With batches side by side a later one (a single reserve,
    quick to read) could reach the Lua call before an earlier one of sixty, and take the last
    units from the earlier buyers."""

    def __init__(self, stock: StockClient, product_id: int) -> None:
        super().__init__()
        self.stock = stock
        self.product_id = product_id
        # Each ask with its timeout, its asker's future, and the asker's context.
        self.waiting: list[tuple[HoldAsk, float | None, asyncio.Future[HoldAnswer],
                                 contextvars.Context]] = []

    def ask(self, ask: HoldAsk, timeout: float | None) -> asyncio.Future[HoldAnswer]:
        future: asyncio.Future[HoldAnswer] = asyncio.get_running_loop().create_future()
        self.waiting.append((ask, timeout, future, contextvars.copy_context()))
        self.schedule_flush()
        return future

    async def flush(self) -> None:
        batch, later, context = _HoldBatch(), [], None
        for waiting in self.waiting:
            ask, timeout, future, asker = waiting
            if future.done():
                continue  # its caller is gone: no hold for nobody
            if not batch.takes(ask.order_id):
                later.append(waiting)  # the same order twice, or past the bound: the next
                continue
            batch.add(ask, timeout, future)
            context = context or asker
        self.waiting = later
        if later:
            self.schedule_flush()
        if context is not None:
            # In the context of the batch's first asker: its trace shows the call, and its
            # request id reaches stock_service; the other askers' traces end at their wait.
            await asyncio.create_task(self.stock.post_batch(self.product_id, batch),
                                      context=context)
        if not self.waiting:
            self.stock.idle(self.product_id, self)


class StockClient:
    def __init__(self, client: ServiceClient) -> None:
        self.client = client
        # Per product with reserves asked or in flight, its queue.
        self._reserves: dict[int, _ProductReserves] = {}

    async def reserve(self, *, product_id: int, order_id: int, user_id: int, quantity: int,
                      expires_at: datetime, timeout: float | None = None,
                      resent: bool = False) -> Hold:
        """`timeout`: what is left of the order's time budget (the client's default if None).
        `resent`: this order id may hold units already (an earlier decision of the same place
        died after reserving): stock_service answers its hold as it is, never from its sold-out
        memory. Sent with the product's other reserves of this turn, in the order asked, once
        the product's batch in flight (if any) is answered."""
        reserves = self._reserves.get(product_id)
        if reserves is None:
            reserves = self._reserves[product_id] = _ProductReserves(self, product_id)
        answer = await reserves.ask(HoldAsk.model_construct(
            order_id=order_id, user_id=user_id, quantity=quantity, expires_at=expires_at,
            resent=resent), timeout)
        if answer.status == 200 and answer.hold is not None:
            return answer.hold
        raise _refusal(answer.status, answer.code, answer.detail)

    def idle(self, product_id: int, reserves: _ProductReserves) -> None:
        """The product's queue is empty, its batch answered: forgotten until asked again."""
        if self._reserves.get(product_id) is reserves:
            del self._reserves[product_id]

    async def post_batch(self, product_id: int, batch: _HoldBatch) -> None:
        """Sends the batch; each asker's future gets its answer, or StockUnavailable."""
        try:
            # As HoldAsk reads it (times in ISO-8601 UTC with a Z; ours are naive UTC).
            body = {"holds": [{"order_id": ask.order_id, "user_id": ask.user_id,
                               "quantity": ask.quantity, "resent": ask.resent,
                               **({"expires_at": to_utc_z(ask.expires_at)}
                                  if ask.expires_at is not None else {})}
                              for ask in batch.asks]}
            response = await self._call("POST", holds_path(product_id), body, batch.timeout)
            if response.status != 200:
                raise _refusal(503 if response.status >= 500 else response.status,
                               response.code, _detail(response))
            batch.answer(HoldBatchAnswer.model_validate(response.body).answers)
        except StockUnavailable as failed:
            batch.fail(failed)
        except Exception as wrong:  # a 4xx for the whole batch, a body that is not one
            batch.fail(StockUnavailable(f"stock_service refused a batch of reserves: {wrong}"))
        finally:
            batch.fail(StockUnavailable())  # cancelled: nobody waits for ever

    async def release(self, *, product_id: int, order_id: int) -> bool:
        """True once the units are back (or there never was a hold to give back)."""
        response = await self._call("POST", hold_path(product_id, order_id) + "/release")
        return response.status in (200, 404)

    async def commit(self, *, product_id: int, order_id: int) -> CommitOutcome:
        """'committed', 'released' (too late: the units went back) or 'missing'."""
        response = await self._call("POST", hold_path(product_id, order_id) + "/commit")
        if response.status == 200:
            return "committed"
        if response.status == 409:
            return "released"
        if response.status == 404:
            return "missing"
        raise StockUnavailable(f"stock_service answered {response.status} to a commit.")

    async def held_holds(self, *, older_than: timedelta, after: int, limit: int) -> HoldPage:
        """Holds still held at least `older_than` old by stock_service's clock."""
        path = (f"{HELD_HOLDS_PATH}?older_than_seconds={older_than.total_seconds()}"
                f"&after={after}&limit={limit}")
        response = await self._call("GET", path)
        if response.status != 200:
            raise StockUnavailable(f"stock_service answered {response.status} to a hold list.")
        return HoldPage.model_validate(response.body)

    async def _call(self, method: str, path: str, body: object = None,
                    timeout: float | None = None,
                    headers: dict[str, str] | None = None) -> ServiceResponse:
        try:
            return await self.client.request(method, path, json_body=body, headers=headers,
                                             timeout=timeout)
        except ServiceCallFailed as failed:
            raise StockUnavailable() from failed


class PaymentsClient:
    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    async def latest_for_order(self, order_id: int) -> PaymentView | None:
        response = await self.client.request("GET", by_order_path(order_id))
        if response.status == 404:
            return None
        if response.status != 200:
            raise ServiceCallFailed(self.client.name, f"answered {response.status}")
        return PaymentView.model_validate(response.body)

    async def refund(self, order_id: int) -> bool:
        """True once the order's charge is refunded, or payment_service states that the order
        has no charge (NO_CHARGE); any other answer, a bare 404 included, is asked again later."""
        response = await self.client.request("POST", by_order_path(order_id, "refund"))
        return response.status == 200 or (response.status == 404 and response.code == NO_CHARGE)
