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


@dataclass(frozen=True)
class Final:
    owner: str
    body: bytes  # compact JSON, as the service's own JSONResponse renders it
    until: float


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

    def __len__(self) -> int:
        return len(self._held)

    def heard(self, raw: str) -> None:
        try:
            message = json.loads(raw)
            now = time.monotonic()
            until = now + int(message["ttl_ms"]) / 1000
            entries = _entries(message["finals"])
            pending = _entries(message.get("pending", ()))
        except (ValueError, KeyError, TypeError):
            logger.warning("edge finals message not understood", extra={"raw": raw[:200]})
            return
        for path, owner, body in entries:
            self._held.pop(path, None)  # kept in the order heard: the oldest go first
            self._held[path] = Final(owner, body, until)
            self._pending.pop(path, None)
            _wake(self._waiting.pop(path, ()))
        fresh_until = now + PENDING_SECONDS
        for path, owner, body in pending:
            if path not in self._held:  # a final is final
                self._pending.pop(path, None)
                self._pending[path] = Final(owner, body, fresh_until)
        self._forget_old()

    async def wait(self, path: str, user_id: str, timeout: float) -> bytes | None:
        """`path`'s final state for `user_id` once it is heard, or None after `timeout`."""
        body = self.final_for(path, user_id)
        if body is not None:
            return body
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(path, set()).add(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await waiter
        finally:
            waiters = self._waiting.get(path)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiting[path]
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
        return _owned(self._pending, path, user_id)

    def final_for(self, path: str, user_id: str) -> bytes | None:
        """The body of `path`'s final state if `user_id` owns it and it is still held."""
        return _owned(self._held, path, user_id)


def _wake(waiters: Iterable[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


def _entries(raw: object) -> list[tuple[str, str, bytes]]:
    """[path, owner, body] entries, each body as compact JSON (TypeError: not a list)."""
    if not isinstance(raw, (list, tuple)):
        raise TypeError("entries")
    return [(str(path), str(owner),
             json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())
            for path, owner, body in raw]


def _owned(held: OrderedDict[str, Final], path: str, user_id: str) -> bytes | None:
    entry = held.get(path)
    if entry is None or entry.owner != user_id:
        return None
    if entry.until <= time.monotonic():
        del held[path]
        return None
    return entry.body
