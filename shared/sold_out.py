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
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
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


class InFlightLimit:
    """At most `limit` calls per key (a product) in flight from this process; the others wait
    their turn, first come first served, for at most `wait_seconds`.

    Beside a SoldOutMemory it makes the memory work when the crowd arrives all at once: without
    it every request that came in before the first refusal came back was sent on (measured: 700
    of 2,000 orders at a sale's opening reached stock_service for 200 units). A request that
    waited asks the memory again once it has its slot, so the queue behind the last unit drains
    without asking anyone.

    A layer in front of the framework can keep the crowd out of it while the slots are taken
    (`wait_outside`): each slot given back lets one such waiter in, and `wake_all` (the memory
    has just learnt the product is sold out) lets them all look again at once.
    """

    def __init__(self, limit: int, wait_seconds: float) -> None:
        self.limit = limit
        self.wait_seconds = wait_seconds
        self._slots: dict[int, asyncio.Semaphore] = {}
        self._users: dict[int, int] = {}
        self._outside: dict[int, deque[asyncio.Future[None]]] = {}

    def busy(self, key: int) -> bool:
        """Every slot of `key` is taken: a new call would wait."""
        semaphore = self._slots.get(key)
        return semaphore is not None and semaphore.locked()

    async def wait_outside(self, key: int) -> bool:
        """Waits, without a slot, until one of `key`'s slots is given back or wake_all(key);
        False if `wait_seconds` passed first. Returns at once when a slot is free."""
        if not self.busy(key):
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting = self._outside.setdefault(key, deque())
        waiting.append(future)
        try:
            async with asyncio.timeout(self.wait_seconds):
                await future
            return True
        except TimeoutError:
            return False
        finally:
            if not future.done():
                future.cancel()
            with suppress(ValueError):
                waiting.remove(future)  # only a waiter that timed out or was cancelled is there
            if not waiting and self._outside.get(key) is waiting:
                del self._outside[key]

    def wake_all(self, key: int) -> None:
        """Every waiter outside looks again (the memory has just changed its answer)."""
        for future in self._outside.pop(key, ()):
            if not future.done():
                future.set_result(None)

    def _wake_one(self, key: int) -> None:
        waiting = self._outside.get(key)
        while waiting:
            future = waiting.popleft()
            if not future.done():
                future.set_result(None)
                return

    @asynccontextmanager
    async def slot(self, key: int) -> AsyncIterator[None]:
        semaphore = self._slots.get(key)
        if semaphore is None:
            semaphore = self._slots[key] = asyncio.Semaphore(self.limit)
        self._users[key] = self._users.get(key, 0) + 1
        try:
            try:
                async with asyncio.timeout(self.wait_seconds):
                    await semaphore.acquire()
            except TimeoutError:
                raise SlotTimeout() from None
            try:
                yield
            finally:
                semaphore.release()
                self._wake_one(key)
        finally:
            self._users[key] -= 1
            if not self._users[key]:  # nobody holds or waits: forget the key
                del self._users[key]
                del self._slots[key]
                self.wake_all(key)  # nothing is in flight: nobody outside has a reason to wait
