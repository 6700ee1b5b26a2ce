"""A sold-out answer remembered for a fraction of a second, in the process: at a sale's opening
most requests are refused, and a crowd refused a moment ago is refused again without asking.

Per product it keeps the smallest quantity refused as sold out: any request for at least that
many is refused while the memory lasts. When it lapses, one request asks again while the
others go on being refused (for at most one more period), so a crowd sends one question per
period, not one per request in flight. Units that come back (an order expired or cancelled)
are buyable again once that question is answered: within two periods.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import Enum


class Verdict(Enum):
    REFUSE = "refuse"
    ASK = "ask"
    FREE = "free"


@dataclass
class _Refused:
    smallest: int
    until: float
    asking: bool = False


class SoldOutMemory:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._refused: dict[int, _Refused] = {}

    def verdict(self, product_id: int, quantity: int) -> Verdict:
        """REFUSE: answer sold out now. ASK: the memory lapsed and this request is the one that
        asks (it must not be refused by the memory after this, or nobody would ask). FREE:
        nothing is remembered for it. After ASK or FREE, tell the memory what was answered."""
        if self.still_refuses(product_id, quantity):
            return Verdict.REFUSE
        entry = self._refused.get(product_id)
        if entry is not None and quantity >= entry.smallest:
            entry.asking = True  # this one asks; if it never tells, the next period asks again
            return Verdict.ASK
        return Verdict.FREE

    def refuses(self, product_id: int, quantity: int) -> bool:
        """True: answer sold out now. False: ask (and tell the memory what was answered)."""
        return self.verdict(product_id, quantity) is Verdict.REFUSE

    def still_refuses(self, product_id: int, quantity: int) -> bool:
        """refuses() without choosing the request that asks when the memory has lapsed: for a
        look ahead of the path that will call refuses()."""
        entry = self._refused.get(product_id)
        if entry is None or quantity < entry.smallest:
            return False
        now = time.monotonic()
        if now < entry.until:
            return True
        return entry.asking and now < entry.until + self.seconds  # another one is asking

    def remember(self, product_id: int, quantity: int) -> None:
        """The product was refused as sold out for `quantity`."""
        if self.seconds <= 0:
            return
        entry = self._refused.get(product_id)
        smallest = min(quantity, entry.smallest) if entry and not entry.asking else quantity
        self._refused[product_id] = _Refused(smallest, time.monotonic() + self.seconds)

    def forget(self, product_id: int) -> None:
        """Units are there again (one was held, or given back through this process)."""
        self._refused.pop(product_id, None)


class SlotTimeout(Exception):
    """No slot came free in time: the calls ahead are slow (their service is, most likely)."""


@dataclass
class _Turn:
    limit: InFlightLimit
    key: int
    used: bool = False


# The slot a task took in front of the framework (InFlightLimit.take_turn), for its route's
# slot() to use. A request is one task, so the route sees what the layer in front set.
_TURN: ContextVar[_Turn | None] = ContextVar("in_flight_turn", default=None)


class InFlightLimit:
    """At most `limit` calls per key (a product) in flight from this process; the others wait
    their turn, first come first served, for at most `wait_seconds`.

    Beside a SoldOutMemory it makes the memory work when the crowd arrives all at once: without
    it every request that came in before the first refusal came back was sent on (measured: 700
    of 2,000 orders at a sale's opening reached stock_service for 200 units). A request that
    waited asks the memory again once it has its slot, so the queue behind the last unit drains
    without asking anyone.

    A layer in front of the framework can wait for the turn itself (`take_turn`), so the crowd
    waits there and not inside the framework: the slot it gets is the one its route's `slot()`
    then uses (one wait, one place in the queue), and `give_back_turn` returns it if the route
    never used it.
    """

    def __init__(self, limit: int, wait_seconds: float) -> None:
        self.limit = limit
        self.wait_seconds = wait_seconds
        self._slots: dict[int, asyncio.Semaphore] = {}
        self._users: dict[int, int] = {}

    def busy(self, key: int) -> bool:
        """Every slot of `key` is taken or waited for: a new call would wait."""
        semaphore = self._slots.get(key)
        return semaphore is not None and semaphore.locked()

    async def take_turn(self, key: int) -> bool:
        """Waits for a slot of `key` as slot() does and keeps it for this task's next
        slot(key). False if none came within `wait_seconds`."""
        try:
            await self._acquire(key)
        except SlotTimeout:
            return False
        _TURN.set(_Turn(self, key))
        return True

    def give_back_turn(self) -> None:
        """The slot take_turn got, if this task's slot() has not used it."""
        turn = _TURN.get()
        if turn is not None and turn.limit is self and not turn.used:
            turn.used = True
            self._release(turn.key)

    @asynccontextmanager
    async def slot(self, key: int) -> AsyncIterator[None]:
        turn = _TURN.get()
        if turn is not None and turn.limit is self and turn.key == key and not turn.used:
            turn.used = True  # waited for in front of the framework already
        else:
            await self._acquire(key)
        try:
            yield
        finally:
            self._release(key)

    async def _acquire(self, key: int) -> None:
        semaphore = self._slots.get(key)
        if semaphore is None:
            semaphore = self._slots[key] = asyncio.Semaphore(self.limit)
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with asyncio.timeout(self.wait_seconds):
                await semaphore.acquire()
        except TimeoutError:
            self._leave(key)
            raise SlotTimeout() from None
        except BaseException:
            self._leave(key)
            raise

    def _release(self, key: int) -> None:
        self._slots[key].release()
        self._leave(key)

    def _leave(self, key: int) -> None:
        self._users[key] -= 1
        if not self._users[key]:  # nobody holds or waits: forget the key
            del self._users[key]
            del self._slots[key]
