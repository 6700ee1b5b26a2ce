"""Order ids made in the service before anything else happens (hi-lo): a process takes a block
of ids from MySQL in one short transaction and hands them out from memory, so the order path
pays for an id once in a thousand orders. Unique across replicas, increasing per process, and
below 2^53 for a very long time (a thousand blocks a second would last 285 years)."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select, update
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from order_service.orders.models import IdBlock

BLOCK = 1000


class OrderIds:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, name: str = "orders",
                 block: int = BLOCK) -> None:
        self.sessions = sessions
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
        async with self.sessions() as session, session.begin():
            await session.execute(insert(IdBlock).values(name=self.name, next_id=1)
                                  .prefix_with("IGNORE"))
            # LAST_INSERT_ID(expr) hands the new value back on this connection, no SELECT race.
            await session.execute(update(IdBlock).where(IdBlock.name == self.name)
                                  .values(next_id=func.last_insert_id(IdBlock.next_id + self.block)))
            end = (await session.execute(select(func.last_insert_id()))).scalar_one()
        return int(end) - self.block
