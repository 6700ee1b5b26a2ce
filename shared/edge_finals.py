"""Final states given at the edge: the contract between a service whose resource has reached a
state that never changes again (order_service's ticket, once answered) and the gateway, which
then answers its owner's reads of it without forwarding.

At an opening every buyer in the line reads a ticket, most of them after its answer was given
(the sell-out refuses every waiting ticket at once): a stream opened, a read again. Measured in
`make load` (2,000 buyers): 991 of 1,741 ticket streams reached the gateway after their ticket's
answer, and each still cost a new upstream connection and a request at order_service, at the
moment both were busiest.

A message (JSON) on the channel `<prefix>edge-finals`, published by the service in the same
step that gives the answers (a Lua script):

    {"ttl_ms": 60000, "finals": [["/api/v1/orders/tickets/1-abc", "42", {...body...}], ...]}

For `ttl_ms`, to the signed-in user whose id is the entry's second item only, the gateway
answers `GET <path>` with 200 and the body (JSON), and `GET <path>/events` with the body as one
server-sent event, after which the stream ends; both only without a query string. Anyone else,
any query (`?wait=`), any other method is forwarded as before: a stranger's ticket is the
service's 404 to give. A final state is final, so a gateway that missed a message, or forgot an
entry (at most `max_held`, the oldest first), only forwards.

Streams held at the edge. A service's answer to `GET <path>` that carries `X-Edge-Final:
pending` (EDGE_FINAL_HEADER) says that the resource is not final yet and that its final state
will be published here. The gateway then holds its owner's `GET <path>/events` itself: that
answer as the first event, the final state as the last when it is heard (`wait`), a read of
`<path>` again now and then meanwhile (a position that moved, a message missed). The crowd's
ticket streams then cost order_service one short read each on a pooled connection, not a
connection and a stream each (`make load` with 20,000 buyers: most of 17,000 streams found
order_service's listen queue full and were answered 503).

Pending states. A message may also carry `"pending": [[path, owner, body], ...]`: resources just
made, not final, whose final state will be published here (order_service's places in line, in
the step that takes them). For PENDING_SECONDS after it is heard, a held stream of such a path
takes the body as its first event instead of reading `<path>`: at an opening the crowd opens
its ticket streams right after the 202 that gave the ticket, and each read was a request at
order_service when it was busiest. Past that the body's position may have moved, and the
stream reads `<path>` as before. A pending state never outlives its final. While the gateway's
subscription is down none is used, and once it is back they are all forgotten and every held
stream reads its resource again soon (`forget_pending`): their finals may have been missed.

Places in a queue. A pending entry may carry a fourth item, `[queue, base]`: its body's
`position` (1 for the next) was taken when the service's queue `queue` had moved `base` places
on. A message may carry `"moved": [[queue, count], ...]`: how many places have left that queue
from its front since it began (order_service's line, each time it admits places). A stream
held on such a pending state is then sent its position as it moves, `position - (count -
base)`, without a read: held, the crowd's streams would otherwise hear their position only
when they read their ticket again (every 10 s or more). It is an estimate between reads, as the
place can only see the queue's front: a place put back in front of it (a decision to be made
again) or taken before it by an earlier arrival heard late leaves it a little ahead of the
truth until the next read. A read's position is counted from the count heard when its answer
came, so the places that left while the read was on its way are not counted: a little behind
the truth until the next move is heard. A count heard before the pending state is never
applied, and one below the base (a queue begun again) ends the following: the reads tell the
rest. A gateway older than this contract drops a message whose pending entries name a queue
(with a warning): deploy gateways first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

logger = logging.getLogger("shared.edge_finals")

FINALS_TOPIC = "edge-finals"
STREAM_SUFFIX = "/events"
# Entries held by default: a few hundred bytes each.
MAX_HELD = 200_000
# How long a pending state heard stands for its resource's first event (module docstring).
PENDING_SECONDS = 5.0
# The field of a pending body that moves with its queue.
POSITION_FIELD = "position"
# Queues whose count is kept (one per product with a line): the oldest heard are forgotten.
MAX_QUEUES = 10_000


@dataclass(frozen=True)
class Place:
    """Where a pending resource stands: its body's position was taken when `queue` had moved
    `base` places on; heard at `heard_at` (monotonic)."""

    queue: str
    base: int
    heard_at: float


@dataclass(frozen=True)
class Final:
    owner: str
    body: bytes  # compact JSON, as the service's own JSONResponse renders it
    until: float
    place: Place | None = None


class EdgeFinals:
    """The final states this process heard, by path, each forgotten once its time is up."""

    def __init__(self, *, max_held: int = MAX_HELD) -> None:
        self.max_held = max_held
        self._held: OrderedDict[str, Final] = OrderedDict()
        self._pending: OrderedDict[str, Final] = OrderedDict()
        # How often the pending states were forgotten (the subscription reconnected): a held
        # stream that sees it move may have missed its final, and reads its resource again.
        self.reconnections = 0
        # Streams held here, waiting for their path's final state.
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}
        # Per queue, how many places have left its front, and when that was heard.
        self._moved: OrderedDict[str, tuple[int, float]] = OrderedDict()
        # Streams held here, waiting for their queue to move.
        self._queue_waiting: dict[str, set[asyncio.Future[None]]] = {}

    def __len__(self) -> int:
        return len(self._held)

    def heard(self, raw: str) -> None:
        try:
            message = json.loads(raw)
            now = time.monotonic()
            until = now + int(message["ttl_ms"]) / 1000
            entries = _entries(message["finals"])
            pending = _entries(message.get("pending", ()))
            moved = [(str(queue), int(count)) for queue, count in message.get("moved", ())]
        except (ValueError, KeyError, TypeError):
            logger.warning("edge finals message not understood", extra={"raw": raw[:200]})
            return
        for path, owner, body, _ in entries:
            self._held.pop(path, None)  # kept in the order heard: the oldest go first
            self._held[path] = Final(owner, body, until)
            self._pending.pop(path, None)
            _wake(self._waiting.pop(path, ()))
        fresh_until = now + PENDING_SECONDS
        for path, owner, body, at in pending:
            if path not in self._held:  # a final is final
                self._pending.pop(path, None)
                place = None if at is None else Place(at[0], at[1], now)
                self._pending[path] = Final(owner, body, fresh_until, place)
        for queue, count in moved:
            self._moved.pop(queue, None)
            self._moved[queue] = (count, now)
            _wake(self._queue_waiting.pop(queue, ()))
        while len(self._moved) > MAX_QUEUES:
            self._moved.popitem(last=False)
        self._forget_old()

    async def wait(self, path: str, user_id: str, timeout: float, *,
                   queue: str | None = None) -> bytes | None:
        """`path`'s final state for `user_id` once it is heard, or None after `timeout` (or,
        with `queue`, once a count of that queue is heard)."""
        body = self.final_for(path, user_id)
        if body is not None:
            return body
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        watched = [(self._waiting, path)] + ([(self._queue_waiting, queue)] if queue else [])
        for waiting, key in watched:
            waiting.setdefault(key, set()).add(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await waiter
        finally:
            for waiting, key in watched:
                waiters = waiting.get(key)
                if waiters is not None:
                    waiters.discard(waiter)
                    if not waiters:
                        del waiting[key]
        return self.final_for(path, user_id)

    def _forget_old(self) -> None:
        now = time.monotonic()
        for held in (self._held, self._pending):
            while held and (len(held) > self.max_held or next(iter(held.values())).until <= now):
                held.popitem(last=False)

    def forget_pending(self) -> None:
        """Every pending state forgotten, and every stream waiting for a final woken (a
        subscription that dropped may have missed their finals): they read their resource
        again."""
        self._pending.clear()
        self.reconnections += 1
        for waiters in self._waiting.values():
            _wake(waiters)

    def pending_for(self, path: str, user_id: str) -> bytes | None:
        """The body of `path`'s pending state if `user_id` owns it and it is still fresh."""
        entry = _owned(self._pending, path, user_id)
        return None if entry is None else entry.body

    def place_for(self, path: str, user_id: str) -> Place | None:
        """Where `path`'s pending state stands in its queue, if it is `user_id`'s, still fresh,
        and named one."""
        entry = _owned(self._pending, path, user_id)
        return None if entry is None else entry.place

    def moved_since(self, place: Place) -> int | None:
        """How many places have left the front of `place`'s queue since its position was
        taken, from a count heard after it was; None if none was (or one that went back)."""
        count = self._count_since(place)
        return None if count is None or count < place.base else count - place.base

    def rebased(self, place: Place) -> Place:
        """`place` counted from now on, for a position just read from the service: from the
        count heard last (its base if none was heard since; a lower one if its queue began
        again)."""
        count = self._count_since(place)
        return Place(place.queue, place.base if count is None else count, time.monotonic())

    def begun_again(self, place: Place) -> bool:
        """Whether a count heard since `place` is below its base: its queue began again."""
        count = self._count_since(place)
        return count is not None and count < place.base

    def _count_since(self, place: Place) -> int | None:
        """The count of `place`'s queue heard last, if heard since the place was."""
        heard = self._moved.get(place.queue)
        return None if heard is None or heard[1] < place.heard_at else heard[0]

    def final_for(self, path: str, user_id: str) -> bytes | None:
        """The body of `path`'s final state if `user_id` owns it and it is still held."""
        entry = _owned(self._held, path, user_id)
        return None if entry is None else entry.body


def _wake(waiters: Iterable[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


def _entries(raw: object) -> list[tuple[str, str, bytes, tuple[str, int] | None]]:
    """[path, owner, body] entries, each body as compact JSON, and [queue, base] if a fourth
    item names one (TypeError or ValueError: not such a list)."""
    if not isinstance(raw, (list, tuple)):
        raise TypeError("entries")
    entries = []
    for entry in raw:
        path, owner, body, *rest = entry
        if len(rest) > 1:
            raise ValueError("entry")
        at = None
        if rest:
            queue, base = rest[0]
            at = (str(queue), int(base))
        entries.append((str(path), str(owner),
                        json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(), at))
    return entries


class QueuePosition:
    """A held stream's position as its queue moves (module docstring): given when it comes
    nearer the front; `due` is when its holder may send the next."""

    def __init__(self, place: Place, state: dict[str, object], position: int) -> None:
        self.place = place
        self.state = state
        self.start = position  # at place.base
        self.shown = position
        self.due = 0.0  # monotonic: when a move may be sent next

    @classmethod
    def of(cls, place: Place | None, body: bytes) -> QueuePosition | None:
        """Following `body`'s position from `place`; None without a place or a position."""
        read = None if place is None else _position_of(body)
        return None if place is None or read is None else cls(place, *read)

    def moved(self, finals: EdgeFinals) -> bytes | None:
        """The body with its position now, if it came nearer the front since last sent."""
        moved = finals.moved_since(self.place)
        if moved is None:
            return None
        position = max(1, self.start - moved)
        if position >= self.shown:
            return None
        self.shown = position
        self.state[POSITION_FIELD] = position
        return json.dumps(self.state, ensure_ascii=False, separators=(",", ":")).encode()

    def ended(self, finals: EdgeFinals) -> bool:
        """Nothing more to follow: at the front, or its queue began again."""
        return self.shown <= 1 or finals.begun_again(self.place)

    def read_again(self, body: bytes, finals: EdgeFinals) -> None:
        """The service's own reading of the resource, sent as it is: counted from there."""
        read = _position_of(body)
        if read is None:
            return
        self.place = finals.rebased(self.place)
        self.state, self.start = read
        self.shown = self.start


def _position_of(body: bytes) -> tuple[dict[str, object], int] | None:
    """A pending body as JSON and its position, if it has one."""
    try:
        state = json.loads(body)
    except ValueError:
        return None
    if not isinstance(state, dict):
        return None
    position = state.get(POSITION_FIELD)
    if type(position) is not int:
        return None
    return state, position


def _owned(held: OrderedDict[str, Final], path: str, user_id: str) -> Final | None:
    """`path`'s entry if `user_id` owns it and its time is not up (else forgotten)."""
    entry = held.get(path)
    if entry is None or entry.owner != user_id:
        return None
    if entry.until <= time.monotonic():
        del held[path]
        return None
    return entry
