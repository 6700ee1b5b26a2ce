"""Order ids made in the service before anything else happens (hi-lo): a process takes a block
of ids from MySQL in one short transaction and hands them out from memory, so the order path
pays for an id once in a thousand orders. Unique across replicas, increasing per process, and
below 2^53 for a very long time (a thousand blocks a second would last 285 years)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from order_service.orders.repository import OrderRepository
from shared.db import Transactions

BLOCK = 1000


@dataclass(frozen=True)
class NotedId:
    """The order id a place of the line is decided under, kept in its record before the reserve
    (orders/drain.py; JOIN for a place that goes straight on, orders/admission.py);
    `decided_before`: an earlier decision used it and may have left a hold under it (its
    replica died after reserving), which this decision takes over (orders/creation.py)."""

    order_id: int
    decided_before: bool
    # With decided_before: keeps a new id in the place's record in `order_id`'s stead, when the
    # hold under `order_id` was gone and the decision reserves afresh (orders/drain.py).
    note_again: Callable[[int], Awaitable[None]] | None = None


class OrderIds:
    def __init__(self, transactions: Transactions[OrderRepository], *, name: str = "orders",
                 block: int = BLOCK) -> None:
        self.transactions = transactions
        self.name = name
        self.block = block
        self._next = 0
        self._end = 0
        self._lock = asyncio.Lock()

    async def next(self) -> int:
        if self._next >= self._end:
            async with self._lock:
                if self._next >= self._end:
                    self._next = await self._take_block()
                    self._end = self._next + self.block
        value = self._next
        self._next += 1
        return value

    async def _take_block(self) -> int:
        async with self.transactions.write() as orders:
            return await orders.take_id_block(self.name, self.block)
