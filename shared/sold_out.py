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
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
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


@dataclass(eq=False)
class Slot:
    """One slot of one key, taken (by `InFlightLimit.take_turn` or `slot()`); given back once,
    however many times `give_back` is called. A layer in front of the framework that waited for
    it hands it to the route explicitly (the route passes it to `slot(key, taken=...)`)."""

    limit: InFlightLimit
    key: int
    # When its wait began (time.monotonic()): what the wait took counts against the request's
    # time budget, wherever it was waited for.
    waited_since: float = field(default_factory=time.monotonic)
    given_back: bool = False

    def give_back(self) -> None:
        if not self.given_back:
            self.given_back = True
            self.limit._release(self.key)


class InFlightLimit:
    """At most `limit` calls per key (a product) in flight from this process; the others wait
    their turn, first come first served, for at most `wait_seconds`.

    Beside a SoldOutMemory it makes the memory work when the crowd arrives all at once: without
    it every request that came in before the first refusal came back was sent on (measured: 700
    of 2,000 orders at a sale's opening reached stock_service for 200 units). A request that
    waited asks the memory again once it has its slot, so the queue behind the last unit drains
    without asking anyone.

    A layer in front of the framework can wait for the turn itself (`take_turn`), so the crowd
    waits there and not inside the framework: the Slot it gets is handed to its route, whose
    `slot(key, taken=...)` uses it (one wait, one place in the queue); `Slot.give_back` returns
    it if the route never used it.
    """

    def __init__(self, limit: int, wait_seconds: float) -> None:
        self.limit = limit
        self.wait_seconds = wait_seconds
        self._slots: dict[int, asyncio.Semaphore] = {}
        self._users: dict[int, int] = {}
        # Told the key of every slot given back (a line waiting for slots admits its next).
        self.on_release: Callable[[int], None] | None = None

    def busy(self, key: int) -> bool:
        """Every slot of `key` is taken or waited for: a new call would wait."""
        semaphore = self._slots.get(key)
        return semaphore is not None and semaphore.locked()

    def free(self, key: int) -> int:
        """How many slots of `key` a caller would get now without waiting."""
        return max(self.limit - self._users.get(key, 0), 0)

    async def try_take(self, key: int) -> Slot | None:
        """A slot of `key` if one is free now (nobody waits for it), else None: never waits."""
        semaphore = self._slots.get(key)
        if semaphore is not None and semaphore.locked():
            return None
        await self._acquire(key)  # free: acquired without suspending
        return Slot(self, key)

    async def take_turn(self, key: int) -> Slot | None:
        """Waits for a slot of `key` as slot() does and returns it, for the caller to hand on
        (or give back). None if none came within `wait_seconds`."""
        waited_since = time.monotonic()
        try:
            await self._acquire(key)
        except SlotTimeout:
            return None
        return Slot(self, key, waited_since)

    @asynccontextmanager
    async def slot(self, key: int, *, taken: Slot | None = None) -> AsyncIterator[None]:
        """A slot of `key` for the block: `taken` if it is one of this limit's for that key not
        given back yet (waited for in front of the framework), else one waited for here."""
        if taken is not None and taken.limit is self and taken.key == key and not taken.given_back:
            held = taken
        else:
            await self._acquire(key)
            held = Slot(self, key)
        try:
            yield
        finally:
            held.give_back()

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
        if self.on_release is not None:
            self.on_release(key)

    def _leave(self, key: int) -> None:
        self._users[key] -= 1
        if not self._users[key]:  # nobody holds or waits: forget the key
            del self._users[key]
            del self._slots[key]
