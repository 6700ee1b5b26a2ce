"""Holds: taken in Redis and confirmed in the ledger, released and committed in the ledger first.

A reserve is one Lua call, and only when Redis accepts it one MySQL transaction that records
the hold and moves the counts only if the product still has the units and the user stays within
the limit (shared with the product's other holds arriving meanwhile: stock/writer.py). A batch of
a product's reserves (order_service sends those it decides at once together) is one Lua call for
all of them, in the batch's order, and the holds Redis granted are confirmed side by side, so the
group commit writes them together; each is answered as a reserve of its own would be. A
refusal from Redis costs no MySQL work at all, and one admission remembers (stock/admission.py)
costs not even the Lua call. If MySQL refuses what Redis accepted, Redis was wrong: the hold is
taken back, the caller hears the ledger's answer, and the product's live state is rebuilt.

Releases and commits change the ledger first (the truth), then Redis. If Redis cannot be told,
it keeps fewer units available than the ledger (never more) until the reconciler repairs it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from shared.clock import utcnow
from shared.db import Transactions
from shared.errors import DatabaseUnavailable, ProblemError, problem_of
from shared.internal.stock import REFUSALS, Hold, HoldAsk, HoldPage, RefusalCode
from shared.reads import ReadSession
from shared.sale_metrics import StockMetrics
from stock_service.stock.admission import StockAdmission
from stock_service.stock.errors import (
    HoldNotFound,
    HoldReleased,
    ProductNotFound,
    SoldOut,
    StockRebuilding,
)
from stock_service.stock.rebuild import LiveState
from stock_service.stock.repository import LedgerReads, LedgerRepository
from stock_service.stock.scripts import HoldRecord, Outcome, StockScripts
from stock_service.stock.writer import AlreadyInLedger, HoldWriter, LedgerRefused, WriterStopped

logger = logging.getLogger("stock_service.stock")


def _from_ms(ms: int) -> datetime:
    return datetime(1970, 1, 1) + timedelta(milliseconds=ms)


class HoldService:
    def __init__(self, *, transactions: Transactions[LedgerRepository], reads: ReadSession,
                 scripts: StockScripts, live: LiveState, admission: StockAdmission,
                 hold_ttl: timedelta, metrics: StockMetrics | None = None) -> None:
        self.metrics = metrics or StockMetrics()
        self.transactions = transactions
        self.reads = LedgerReads(reads)
        self.scripts = scripts
        self.writer = HoldWriter(transactions)
        self.live = live
        self.admission = admission
        self.hold_ttl = hold_ttl

    async def reserve(self, product_id: int, order_id: int, *, user_id: int, quantity: int,
                      expires_at: datetime | None = None, resent: bool = False) -> Hold:
        """`resent`: the caller sent this reserve before and its answer was lost; the order may
        hold units, so the script answers it (as a replay), never the sold-out memory."""
        [answer] = await self.reserve_many(product_id, [HoldAsk.model_construct(
            order_id=order_id, user_id=user_id, quantity=quantity, expires_at=expires_at,
            resent=resent)])
        if isinstance(answer, ProblemError):
            raise answer
        return answer

    async def reserve_many(self, product_id: int,
                           asks: Sequence[HoldAsk]) -> list[Hold | ProblemError]:
        """Each reserve's hold or refusal, in the order asked (an earlier one takes the last
        units). The script call failing fails them all; anything failing after it fails only
        its own reserve."""
        self.metrics.products.touched(product_id)  # shown on the per-product gauges
        # Refused from memory only if every reserve is: once one asks, the others ride the same
        # script call in their order (refused there, they would have been refused while the
        # unit the memory let one of them ask for was still there).
        if all(not ask.resent and self.admission.sold_out.refuses(product_id, ask.quantity)
               for ask in asks):
            return [SoldOut() for _ in asks]
        outcomes = await self.scripts.reserve_many(
            product_id, [(ask.order_id, ask.user_id, ask.quantity) for ask in asks])
        # Refusals are answered here; only the rest (a hold to confirm or look up) side by side.
        answers: list[Hold | ProblemError | None] = []
        deciding: list[tuple[int, Awaitable[Hold]]] = []
        for ask, outcome in zip(asks, outcomes, strict=True):
            if outcome.refusal is not None:
                if outcome.refusal == "sold_out":
                    self.admission.sold_out.remember(product_id, ask.quantity)
                answers.append(REFUSALS[outcome.refusal]())
            else:
                deciding.append((len(answers), self._decided(product_id, ask, outcome)))
                answers.append(None)  # its place, until decided
        decided = await asyncio.gather(*(call for _, call in deciding), return_exceptions=True)
        for (n, _), result in zip(deciding, decided, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result  # a cancel: the batch's request is gone
            answers[n] = problem_of(result) if isinstance(result, Exception) else result
        return [answer for answer in answers if answer is not None]

    async def _decided(self, product_id: int, ask: HoldAsk, outcome: Outcome) -> Hold:
        """The hold the script's outcome (not a refusal) gives the reserve, confirmed in the
        ledger."""
        expires_at = ask.expires_at or utcnow() + self.hold_ttl
        if outcome.word == "held":
            self.admission.sold_out.forget(product_id)
            # The last units taken: the crowd still waiting is told at once (stock/live.py).
            self.admission.changed(product_id, sold_out=outcome.remaining == 0)
            assert outcome.hold is not None
            assert outcome.price is not None
            return await self._confirm(product_id, ask.order_id, outcome.hold, outcome.price,
                                       expires_at, fresh=True)
        if outcome.word == "replay":
            assert outcome.hold is not None
            return await self._replayed(product_id, ask.order_id, outcome.hold, expires_at)
        if outcome.word == "missing":
            await self._state_missing(product_id)
        raise StockRebuilding()

    async def _confirm(self, product_id: int, order_id: int, record: HoldRecord, price: int,
                       expires_at: datetime, *, fresh: bool) -> Hold:
        hold = Hold(order_id=order_id, product_id=product_id, user_id=record.user_id,
                    quantity=record.quantity, unit_price=price, state="held",
                    expires_at=expires_at, created_at=_from_ms(record.created_ms))
        try:
            await self.writer.write(hold)
        except LedgerRefused as refused:
            # Redis said yes, the ledger no: Redis was wrong (an older snapshot, say).
            logger.warning("ledger refused a hold Redis accepted",
                           extra={"product_id": product_id, "order_id": order_id,
                                  "code": refused.code})
            if refused.code == "sold_out":
                self.admission.sold_out.remember(product_id, record.quantity)
            self.metrics.ledger_refusals.labels(refused.code).inc()
            await self._unreserve(product_id, order_id, remember=refused.code)
            self.live.request_rebuild(product_id)
            raise REFUSALS[refused.code]() from None
        except AlreadyInLedger:
            return await self._as_in_ledger(product_id, order_id, fresh=fresh)
        except (SQLAlchemyError, WriterStopped) as error:
            if fresh:
                # Nothing is decided: give the units back so a retry can take them again.
                await self._unreserve(product_id, order_id)
            raise DatabaseUnavailable() from error
        if fresh:
            self.metrics.hold_event("held", product_id)
        return hold

    async def _as_in_ledger(self, product_id: int, order_id: int, *, fresh: bool) -> Hold:
        """The ledger already has this order's hold: its answer is the first one."""
        existing = await self.reads.hold(product_id, order_id)
        if fresh:
            # Redis had forgotten the hold (or the order's hold is for another product) and
            # just took units a second time: they go back before any answer.
            await self._unreserve(product_id, order_id)
            self.live.request_rebuild(product_id)
        if existing is None:
            raise HoldNotFound()  # the order's hold is for another product
        return existing

    async def _replayed(self, product_id: int, order_id: int, record: HoldRecord,
                        expires_at: datetime) -> Hold:
        existing = await self.reads.hold(product_id, order_id)
        if existing is not None:
            return existing
        if record.state == "held":
            # Redis took the units but the ledger never heard (a crash, or a confirm still in
            # flight): confirm now; if the other confirm wins, the ledger says so.
            product = await self.reads.product(product_id)
            if product is None:
                raise ProductNotFound()
            return await self._confirm(product_id, order_id, record, product.price,
                                       expires_at, fresh=False)
        raise HoldNotFound()

    async def _unreserve(self, product_id: int, order_id: int, *,
                         remember: RefusalCode | None = None) -> None:
        await self.scripts.unreserve(product_id, order_id, remember=remember)
        self.admission.changed(product_id)

    async def _state_missing(self, product_id: int) -> None:
        """Redis has nothing for the product: flushed (rebuild it) or never registered."""
        if not await self.live.epoch_present():
            self.live.request_full_rebuild()
            raise StockRebuilding()
        if await self.reads.product(product_id) is None:
            raise ProductNotFound()
        self.live.request_rebuild(product_id)
        raise StockRebuilding()

    async def release(self, product_id: int, order_id: int) -> Hold:
        async with self.transactions.write() as ledger:
            hold = await ledger.hold_for_update(product_id, order_id)
            if hold is None:
                raise HoldNotFound()
            moved = hold.state != "released"
            if moved:
                await ledger.move_holds([hold], to="released")
        if moved:
            self.metrics.hold_event("released", product_id)
        await self._tell_redis(self.scripts.release, product_id, order_id)
        self.admission.sold_out.forget(product_id)
        return hold.model_copy(update={"state": "released"})

    async def commit(self, product_id: int, order_id: int) -> Hold:
        async with self.transactions.write() as ledger:
            hold = await ledger.hold_for_update(product_id, order_id)
            if hold is None:
                raise HoldNotFound()
            if hold.state == "released":
                raise HoldReleased()
            moved = hold.state == "held"
            if moved:
                await ledger.move_holds([hold], to="committed")
        if moved:
            self.metrics.hold_event("committed", product_id)
        await self._tell_redis(self.scripts.commit, product_id, order_id)
        return hold.model_copy(update={"state": "committed"})

    async def _tell_redis(self, script: Callable[[int, int], Awaitable[object]],
                          product_id: int, order_id: int) -> None:
        try:
            await script(product_id, order_id)
            self.admission.changed(product_id)
        except RedisError:
            # The ledger moved; Redis keeps fewer units available than it until reconciled.
            logger.warning("Redis not told of a ledger change; the reconciler will repair it",
                           extra={"product_id": product_id, "order_id": order_id})

    async def get_hold(self, product_id: int, order_id: int) -> Hold:
        hold = await self.reads.hold(product_id, order_id)
        if hold is None:
            raise HoldNotFound()
        return hold

    async def held_holds(self, *, older_than: timedelta, after_order_id: int,
                         limit: int) -> HoldPage:
        """Holds still waiting for their order to be paid or to give up, at least `older_than`
        old: what order_service's reconciler checks against its orders, to release the ones no
        order will ever settle. Their age is judged by Redis's clock, the one their created_at
        was taken from (the reserve script's TIME), never by the caller's."""
        seconds, micros = await self.scripts.redis.time()
        created_before = _from_ms(int(seconds) * 1000 + int(micros) // 1000) - older_than
        async with self.transactions.read() as ledger:
            holds = await ledger.held_holds(created_before=created_before,
                                            after_order_id=after_order_id, limit=limit + 1)
        page = holds[:limit]
        return HoldPage(items=page, next_after=page[-1].order_id if len(holds) > limit else None)

    async def release_expired(self, *, grace: timedelta, batch: int = 100) -> int:
        """Unpaid holds past their expiry give their units back; safe with several replicas
        (rows another one is reaping are skipped). Returns how many were released."""
        async with self.transactions.write() as ledger:
            expired = await ledger.move_holds(
                await ledger.expired_holds(before=utcnow() - grace, limit=batch), to="released")
        for hold in expired:
            self.metrics.hold_event("expired", hold.product_id)
            await self._tell_redis(self.scripts.release, hold.product_id, hold.order_id)
        return len(expired)
