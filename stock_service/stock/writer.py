"""The ledger rows of new holds, written by group commit (shared/group_commit.py).

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

import logging
from collections import Counter

from sqlalchemy.exc import IntegrityError

from shared.db import Transactions
from shared.group_commit import GroupCommit, WriterStopped
from shared.internal.stock import Hold, RefusalCode
from shared.repository import is_duplicate_entry
from stock_service.stock.repository import LedgerRepository

logger = logging.getLogger("stock_service.holds")

# A batch is one multi-row INSERT and upsert; this keeps each statement a few dozen KB.
MAX_BATCH = 200

__all__ = ["MAX_BATCH", "AlreadyInLedger", "HoldWriter", "LedgerRefused", "WriterStopped"]


class LedgerRefused(Exception):
    """The ledger does not allow the hold: not_found, sold_out or purchase_limit_exceeded."""

    def __init__(self, code: RefusalCode) -> None:
        super().__init__(code)
        self.code = code


class AlreadyInLedger(Exception):
    """The order already has a hold in the ledger."""


class _BatchRefused(Exception):
    pass


class HoldWriter(GroupCommit[Hold]):
    """New holds group-committed per product (shared/group_commit.py). `write` returns once
    the hold is committed, or raises LedgerRefused, AlreadyInLedger, or the database's error,
    as a transaction of its own would."""

    def __init__(self, transactions: Transactions[LedgerRepository], *,
                 max_batch: int = MAX_BATCH) -> None:
        super().__init__(max_batch=max_batch)
        self.transactions = transactions

    def _stream(self, row: Hold) -> int:
        return row.product_id

    def _alone_after(self, error: Exception) -> bool:
        # A guard refused or an order already had a hold: one of them is at fault, and each
        # alone finds which. A deadlock: each alone rather than 200 winners refused for one.
        return isinstance(error, (_BatchRefused, IntegrityError)) or super()._alone_after(error)

    async def _write_together(self, holds: list[Hold]) -> None:
        product_id = holds[0].product_id
        units: Counter[int] = Counter()
        for hold in holds:
            units[hold.user_id] += hold.quantity
        async with self.transactions.write() as ledger:
            # In the guard's lock order (see LedgerRepository): the product's row last.
            await ledger.add_holds(holds)
            await ledger.count_user_units(product_id, units)
            if not await ledger.take_units(product_id, units.total(), units.keys()):
                raise _BatchRefused()
        logger.debug("holds written together", extra={"product_id": product_id,
                                                         "holds": len(holds)})

    async def _write_alone(self, hold: Hold) -> None:
        async with self.transactions.write() as ledger:
            try:
                await ledger.add_holds([hold])
            except IntegrityError as error:
                if is_duplicate_entry(error):  # a hold for this order is already in the ledger
                    raise AlreadyInLedger() from None
                raise
            await ledger.count_user_units(hold.product_id, {hold.user_id: hold.quantity})
            if await ledger.take_units(hold.product_id, hold.quantity, [hold.user_id]):
                return
            product = await ledger.product(hold.product_id)
            if product is None or product.deleted_at is not None:
                raise LedgerRefused("not_found")
            raise LedgerRefused("sold_out" if product.remaining < hold.quantity
                                else "purchase_limit_exceeded")
