"""New orders, written by group commit (shared/group_commit.py), per product.

At a sale's opening the winners' inserts arrive together: measured in bench_sale, an insert in
a transaction of its own took 50 to 300 ms of a winner's wait (queued on the pool behind the
others, each then waiting for the event loop between its statements). Written together, the
orders of one product that arrive while its last insert runs are one multi-row INSERT and one
commit. A batch that meets a duplicate Idempotency-Key or a deadlock is written order by order,
so each caller gets the answer an insert of its own would have.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from order_service.orders.repository import NewOrder, OrderRepository
from shared.db import Transactions
from shared.group_commit import GroupCommit

# One INSERT of this many rows stays a few dozen KB.
MAX_BATCH = 200


class OrderWriter(GroupCommit[NewOrder]):
    def __init__(self, transactions: Transactions[OrderRepository], *,
                 max_batch: int = MAX_BATCH) -> None:
        super().__init__(max_batch=max_batch)
        self.transactions = transactions

    def _stream(self, row: NewOrder) -> int:
        return row.order.product_id

    def _alone_after(self, error: Exception) -> bool:
        return isinstance(error, IntegrityError) or super()._alone_after(error)

    async def _write_together(self, rows: list[NewOrder]) -> None:
        async with self.transactions.write() as orders:
            await orders.insert(rows)

    async def _write_alone(self, row: NewOrder) -> None:
        await self._write_together([row])
