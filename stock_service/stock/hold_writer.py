"""The ledger rows of new holds, written by group commit.

Every hold of a product moves that product's counts, so their transactions queue on its one
row. Measured at a sale's opening (bench_sale: 200 winners among 2,000 buyers) a transaction
per hold took 100 to 200 ms, nearly all of it waiting for that row while the holder's next
statement waited for its event loop. So the holds of a product that arrive while its last
transaction runs are written together in the next one: the holds in one INSERT, the users'
counts in one upsert, the product's counts in one guarded UPDATE. A lone hold is written at
once, alone; a crowd pays one transaction per batch instead of one per hold.

A batch is all or nothing. If its guard refuses (Redis granted more than the ledger allows: an
older snapshot, say) or an order already has a hold, it is rolled back and each of its holds is
written in a transaction of its own, which finds the one at fault and gives it its own answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from stock_service.stock.repository import DUPLICATE_ENTRY, LedgerRepository, NewHold
from stock_service.stock.scripts import LIMIT_EXCEEDED, NOT_FOUND, SOLD_OUT

logger = logging.getLogger("stock_service.holds")

# A batch is one multi-row INSERT and upsert; this keeps each statement a few dozen KB.
MAX_BATCH = 200


class LedgerRefused(Exception):
    """The ledger does not allow the hold: NOT_FOUND, SOLD_OUT or LIMIT_EXCEEDED."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class AlreadyInLedger(Exception):
    """The order already has a hold in the ledger."""


# MySQL's deadlock and lock-wait-timeout errors: a batch cut short by one is written hold by hold.
_RETRY_ALONE = {1213, 1205}


class WriterStopped(Exception):
    """The process stopped before the hold was written."""


class _BatchRefused(Exception):
    pass


class HoldWriter:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *,
                 max_batch: int = MAX_BATCH) -> None:
        self.sessions = sessions
        self.max_batch = max_batch
        self._waiting: dict[int, list[tuple[NewHold, asyncio.Future[None]]]] = {}
        self._writers: dict[int, asyncio.Task[None]] = {}

    async def write(self, hold: NewHold) -> None:
        """Returns once the hold is committed. Raises LedgerRefused, AlreadyInLedger, or the
        database's error, as a transaction of its own would."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(hold.product_id, []).append((hold, done))
        if hold.product_id not in self._writers:
            self._writers[hold.product_id] = asyncio.create_task(
                self._write_waiting(hold.product_id))
        # Shielded: a caller that goes away leaves its hold to be written with the rest (Redis
        # has granted it; the ledger must hear of it either way).
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            done.add_done_callback(_forget_outcome)
            raise

    async def _write_waiting(self, product_id: int) -> None:
        batch: list[tuple[NewHold, asyncio.Future[None]]] = []
        try:
            while waiting := self._waiting.get(product_id):
                batch = waiting[:self.max_batch]
                del waiting[:self.max_batch]
                await self._write_batch(batch)
                batch = []
        except BaseException:
            # Cancelled (the process is stopping): nobody may wait for an answer forever.
            for _, done in batch + self._waiting.get(product_id, []):
                _settle(done, WriterStopped())
            raise
        finally:
            # Reached with nothing waiting and no await since the check: a hold that arrives
            # next starts a writer of its own.
            self._waiting.pop(product_id, None)
            del self._writers[product_id]

    async def _write_batch(self, batch: list[tuple[NewHold, asyncio.Future[None]]]) -> None:
        if len(batch) > 1:
            try:
                await self._write_together([hold for hold, _ in batch])
            except (_BatchRefused, IntegrityError):
                pass  # one of them is at fault: each alone finds which
            except OperationalError as error:
                if _error_code(error) not in _RETRY_ALONE:
                    for _, done in batch:
                        _settle(done, error)
                    return
                # A deadlock or lock wait cut the batch short: each alone rather than 200
                # winners refused for one collision.
            except Exception as error:
                for _, done in batch:
                    _settle(done, error)
                return
            else:
                for _, done in batch:
                    _settle(done, None)
                return
        for hold, done in batch:
            try:
                await self._write_alone(hold)
            except Exception as error:
                _settle(done, error)
            else:
                _settle(done, None)

    async def _write_together(self, holds: list[NewHold]) -> None:
        product_id = holds[0].product_id
        units: Counter[int] = Counter()
        for hold in holds:
            units[hold.user_id] += hold.quantity
        async with self.sessions() as session, session.begin():
            ledger = LedgerRepository(session)
            # In the guard's lock order (see LedgerRepository): the product's row last.
            await ledger.add_holds(holds)
            await ledger.count_user_units(product_id, units)
            if not await ledger.take_units(product_id, units.total(), units.keys()):
                raise _BatchRefused()
        logger.debug("holds written together", extra={"product_id": product_id,
                                                         "holds": len(holds)})

    async def _write_alone(self, hold: NewHold) -> None:
        async with self.sessions() as session, session.begin():
            ledger = LedgerRepository(session)
            try:
                await ledger.add_holds([hold])
            except IntegrityError as error:
                if getattr(error.orig, "args", (None,))[0] == DUPLICATE_ENTRY:
                    raise AlreadyInLedger() from None
                raise
            await ledger.count_user_units(hold.product_id, {hold.user_id: hold.quantity})
            if await ledger.take_units(hold.product_id, hold.quantity, [hold.user_id]):
                return
            product = await ledger.product(hold.product_id)
            if product is None or product.deleted_at is not None:
                raise LedgerRefused(NOT_FOUND)
            raise LedgerRefused(SOLD_OUT if product.remaining < hold.quantity else LIMIT_EXCEEDED)


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():  # cancelled, or answered before a stop settles the whole batch again
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


def _error_code(error: DBAPIError) -> object:
    return getattr(error.orig, "args", (None,))[0]


def _forget_outcome(done: asyncio.Future[None]) -> None:
    if not done.cancelled():
        done.exception()  # retrieved: its caller has gone, and asyncio would log it as lost
