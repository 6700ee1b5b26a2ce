"""The line of an opening: when more buyers ask for a product at once than its order path
decides at once, each gets a place (a ticket) instead of a wait or a 503, and learns its answer
later (docs/line.md).

- Places are kept in Redis (orders/scripts.py), ordered by arrival at the gateway (the signed
  X-Arrived-At), one per buyer per product; every replica shares them.
- Taking places and reading tickets are batched: every request of one loop turn that asks about
  one product shares one script call (FlushPerTurn), so the crowd costs a round trip per turn,
  not per request.
- Places are admitted and decided by orders/drain.py; answers are announced on one channel,
  heard through one subscription per process and handed to the clients waiting here on a
  ticket (`TicketWatch`), with no Redis round trip per waiting client.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from order_service.orders.scripts import TICKETS_PATH, Joined, LineScripts, NewPlace, Record
from shared.batching import FlushPerTurn
from shared.broadcast import Feed
from shared.sale_metrics import LineMetrics
from shared.sse import sse_event

logger = logging.getLogger("order_service.line")

TICKETS_TOPIC = "line-tickets"
OPEN_TOPIC = "line-open"
# <product id>-<16 URL-safe characters>: the product names the keys the ticket lives under.
TICKET_PATTERN = re.compile(r"([1-9][0-9]{0,15})-([A-Za-z0-9_-]{16})")
FINAL_STATES = frozenset({"ordered", "refused"})
# A waiting ticket's stream hears its position move at most this often (one read of the
# product's line for every ticket waiting on it in the process).
POSITIONS_EVERY_SECONDS = 0.5


def new_ticket(product_id: int) -> str:
    return f"{product_id}-{secrets.token_urlsafe(12)}"


def product_of(ticket: str) -> int | None:
    """The product a well-formed ticket belongs to, else None."""
    match = TICKET_PATTERN.fullmatch(ticket)
    return int(match.group(1)) if match else None


def key_field(user_id: int, key: str) -> str:
    """Where a buyer's Idempotency-Key points to its place (a digest: keys are up to 255
    characters of anything printable)."""
    return f"{user_id}:{hashlib.sha256(key.encode()).hexdigest()}"


def client_state(state: str) -> str:
    """A place being decided is still waiting, as far as its buyer can tell."""
    return "waiting" if state == "deciding" else state


def ticket_body(ticket: str, product_id: int, record: Record, position: int) -> dict[str, Any]:
    """The ticket as GET /tickets/{ticket} answers it."""
    if record.body is not None and record.state in FINAL_STATES:
        body: dict[str, Any] = json.loads(record.body)
        return body
    # A place being decided has left the line: it is at its front, whatever it was when taken.
    return {"ticket": ticket, "product_id": product_id,
            "position": 1 if record.state == "deciding" else position or record.position,
            "state": client_state(record.state)}


def status_url(ticket: str) -> str:
    return f"{TICKETS_PATH}/{ticket}"


@dataclass
class _Ask:
    product_id: int
    place: NewPlace | None  # joining
    ticket: str | None  # reading
    future: asyncio.Future[Any]


class _Batches(FlushPerTurn):
    """Joins and reads of one loop turn, one script call per product and kind."""

    def __init__(self, scripts: LineScripts) -> None:
        super().__init__()
        self.scripts = scripts
        self._asked: list[_Ask] = []

    def ask(self, ask: _Ask) -> None:
        self._asked.append(ask)
        self.schedule_flush()

    async def flush(self) -> None:
        asked, self._asked = self._asked, []
        joins: dict[int, list[_Ask]] = {}
        reads: dict[int, list[_Ask]] = {}
        for ask in asked:
            (joins if ask.place is not None else reads).setdefault(ask.product_id, []).append(ask)
        calls = [self._join(product_id, group) for product_id, group in joins.items()]
        calls += [self._read(product_id, group) for product_id, group in reads.items()]
        await asyncio.gather(*calls)

    async def _join(self, product_id: int, group: list[_Ask]) -> None:
        # In arrival order (the gateway's stamps), not in the order the requests reached this
        # process: of one batch, the earliest goes straight on when only some may.
        group.sort(key=lambda ask: ask.place.arrived_us if ask.place is not None else 0)
        joined: list[Joined] = await self._answer(group, lambda: self.scripts.join(
            product_id, [ask.place for ask in group if ask.place is not None]))
        if any(answer.record is None and answer.ticket for answer in joined):
            # For the sweep that finds places whose replica died (drain.py): a place that went
            # straight on too. After the answers: the batch need not wait for it.
            try:
                await self.scripts.mark_open(product_id)
            except Exception:
                # The places stand; the next batch with a new place marks the line again.
                logger.exception("could not mark the line open", extra={"product_id": product_id})

    async def _read(self, product_id: int, group: list[_Ask]) -> None:
        await self._answer(group, lambda: self.scripts.read(
            product_id, [ask.ticket for ask in group if ask.ticket is not None]))

    @staticmethod
    async def _answer(group: list[_Ask], call: Callable[[], Awaitable[list[Any]]]) -> list[Any]:
        """The call's answers, given to the group's asks (its error, if it failed: then [])."""
        try:
            answers = await call()
        except Exception as error:
            for ask in group:
                if not ask.future.done():
                    ask.future.set_exception(error)
            return []
        for ask, answer in zip(group, answers, strict=True):
            if not ask.future.done():
                ask.future.set_result(answer)
        return answers


class TicketWatch:
    """The tickets someone waits on in this process (a long poll, a stream), each a `Feed`
    woken when the subscription hears its answer, or when a read of its product's line finds it
    moved up (OrderLine.positions_moved). A ticket nobody here waits on costs nothing."""

    def __init__(self) -> None:
        self._feeds: dict[str, Feed[dict[str, Any] | None]] = {}
        self._listeners: dict[str, int] = {}
        self._by_product: dict[int, set[str]] = {}
        # The position each watched ticket's clients were last shown.
        self._shown: dict[str, int] = {}

    def open(self, ticket: str) -> Feed[dict[str, Any] | None]:
        """The ticket's feed, watched from now on (before its state is read: an answer heard
        meanwhile is not missed). Every open() is followed by one close()."""
        feed = self._feeds.get(ticket)
        if feed is None:
            feed = self._feeds[ticket] = Feed(None, render_ticket, min_interval=0.0)
            product_id = product_of(ticket)
            if product_id is not None:
                self._by_product.setdefault(product_id, set()).add(ticket)
        self._listeners[ticket] = self._listeners.get(ticket, 0) + 1
        return feed

    def close(self, ticket: str) -> None:
        left = self._listeners.get(ticket, 0) - 1
        if left > 0:
            self._listeners[ticket] = left
            return
        self._listeners.pop(ticket, None)
        self._shown.pop(ticket, None)
        product_id = product_of(ticket)
        if product_id is not None and (tickets := self._by_product.get(product_id)) is not None:
            tickets.discard(ticket)
            if not tickets:
                del self._by_product[product_id]
        feed = self._feeds.pop(ticket, None)
        if feed is not None:
            feed.discard()

    def watched(self) -> list[str]:
        return list(self._feeds)

    def watches(self, product_id: int) -> bool:
        return product_id in self._by_product

    def waiting(self, product_id: int | None = None) -> dict[int, list[str]]:
        """The tickets watched here whose answer is not known yet, by product (one product's,
        or every one's)."""
        products = [product_id] if product_id is not None else list(self._by_product)
        return {product: tickets for product in products
                if (tickets := [ticket for ticket in self._by_product.get(product, ())
                                if not self._feeds[ticket].closed])}

    def shown(self, ticket: str, position: int) -> None:
        """A client of the ticket was shown this position (its stream's first event)."""
        if ticket in self._feeds:
            self._shown[ticket] = position

    def moved(self, ticket: str, body: dict[str, Any]) -> None:
        """The ticket, still waiting, read again: its clients hear it if its position changed."""
        feed = self._feeds.get(ticket)
        if feed is None or feed.closed or self._shown.get(ticket) == body["position"]:
            return
        self._shown[ticket] = body["position"]
        feed.update(body)

    def answered(self, ticket: str, body: dict[str, Any]) -> None:
        feed = self._feeds.get(ticket)
        if feed is not None:
            feed.update(body, final=True)

    def heard(self, message: str) -> None:
        """A message of the tickets channel (orders/scripts.py)."""
        if not self._feeds:
            return
        head, _, rest = message.partition("\n")
        if head == "final":
            for line in rest.split("\n"):
                ticket, _, body = line.partition(" ")
                if ticket in self._feeds:
                    self.answered(ticket, json.loads(body))
            return
        word, _, product = head.partition(" ")
        if word not in ("refused", "refusals"):
            return
        problem_text, _, places = rest.partition("\n")
        problem = json.loads(problem_text)
        for line in places.split("\n"):
            ticket, _, position = line.partition(" ")
            if ticket not in self._feeds:
                continue
            if word == "refusals":  # each place names the request that took it
                position, _, request_id = position.partition(" ")
                problem = {**problem, "request_id": request_id or None}
            self.answered(ticket, {"ticket": ticket, "product_id": int(product),
                                   "position": int(position), "state": "refused",
                                   "problem": problem})


def render_ticket(body: dict[str, Any] | None) -> bytes:
    """A ticket's body as one server-sent event (nothing before it is known)."""
    return b"" if body is None else sse_event(body)


class OrderLine:
    """Taking places and reading tickets (batched), and the tickets watched here."""

    def __init__(self, scripts: LineScripts, *, fingerprint: Callable[[dict[str, Any]], str],
                 retry_after_seconds: int = 1, metrics: LineMetrics | None = None,
                 settle_seconds: float = 0.0) -> None:
        self.metrics = metrics or LineMetrics()
        # How old a request's arrival stamp must be before it joins or goes straight on.
        self.settle_seconds = settle_seconds
        self.scripts = scripts
        self.fingerprint = fingerprint
        self.retry_after_seconds = retry_after_seconds
        self.watch = TicketWatch()
        self._batches = _Batches(scripts)
        # Reads of a product's line for the positions of the tickets waiting here: one at a
        # time per product, at most one per POSITIONS_EVERY_SECONDS.
        self._position_reads: dict[int, asyncio.Task[None]] = {}
        self._positions_read_at: dict[int, float] = {}

    @property
    def publishes_finals(self) -> bool:
        """Answers are published for the gateway too (shared/edge_finals.py)."""
        return bool(self.scripts.finals[0])

    async def join(self, *, product_id: int, user_id: int, quantity: int, key: str | None,
                   arrived_us: int, mode: str = "join", request_id: str | None = None,
                   order_id: int | None = None) -> tuple[Joined, NewPlace]:
        """A place for the buyer, or the one it has (Joined.record set), or none (ticket None:
        the line is full, or `mode` "find" and the buyer has no place). `mode` "go": the caller
        holds a free reserve slot, and the place is admitted at once (Joined.go) if nobody
        waits in the line, wherever they joined it; "find": only the place the buyer has.
        `request_id`: the POST's, named by the place's refusal. `order_id`: mode "go", the id
        the caller reserves under, noted with the place if it is admitted."""
        body = {"product_id": product_id, "quantity": quantity}
        place = NewPlace(mode=mode, ticket=new_ticket(product_id), user_id=user_id, quantity=quantity,
                         key=key or "", key_field=key_field(user_id, key) if key else "",
                         fingerprint=self.fingerprint(body), arrived_us=arrived_us,
                         request_id=request_id or "", order_id=order_id)
        future: asyncio.Future[Joined] = asyncio.get_running_loop().create_future()
        self._batches.ask(_Ask(product_id, place, None, future))
        joined = await future
        if joined.ticket is None:
            if mode != "find":
                self.metrics.ticket("full")
        elif joined.record is None and not joined.go:
            self.metrics.ticket("joined")
        return joined, place

    async def read(self, ticket: str) -> tuple[int, Record | None, int]:
        """(product, the ticket's record or None, its position among the waiting or 0)."""
        product_id = product_of(ticket)
        if product_id is None:
            return 0, None, 0
        future: asyncio.Future[tuple[Record | None, int]] = \
            asyncio.get_running_loop().create_future()
        self._batches.ask(_Ask(product_id, None, ticket, future))
        record, position = await future
        return product_id, record, position

    def positions_moved(self, product_id: int) -> None:
        """Places of the product were admitted: the tickets waiting on it here hear their new
        positions, from one read of the line for all of them (coalesced: at most one per
        POSITIONS_EVERY_SECONDS), never a read per ticket."""
        if product_id in self._position_reads or not self.watch.watches(product_id):
            return
        due = self._positions_read_at.get(product_id, float("-inf")) + POSITIONS_EVERY_SECONDS
        self._position_reads[product_id] = asyncio.create_task(
            self._read_positions(product_id, max(due - time.monotonic(), 0.0)))

    async def _read_positions(self, product_id: int, after: float) -> None:
        try:
            await asyncio.sleep(after)
            self._positions_read_at[product_id] = time.monotonic()
            await self.refresh_positions(product_id)
        except Exception:
            logger.warning("could not read the line's positions",
                           extra={"product_id": product_id})
        finally:
            self._position_reads.pop(product_id, None)

    async def refresh_positions(self, product_id: int | None = None) -> None:
        """One read per product (its line's script, for every ticket watched here at once):
        each waiting ticket's clients hear its position if it moved, and its answer if it has
        one (heard late: the subscription was away)."""
        for product, tickets in self.watch.waiting(product_id).items():
            answers = await self.scripts.read(product, tickets)
            for ticket, (record, position) in zip(tickets, answers, strict=True):
                if record is None:
                    continue
                body = ticket_body(ticket, product, record, position)
                if body["state"] in FINAL_STATES:
                    self.watch.answered(ticket, body)
                elif position:  # a place being decided has none: its answer comes next
                    self.watch.moved(ticket, body)

    async def close(self) -> None:
        reads = list(self._position_reads.values())
        for read in reads:
            read.cancel()
        await asyncio.gather(*reads, return_exceptions=True)

    async def recheck_watched(self) -> None:
        """After the subscription (re)connected: answers announced while it was down are read
        from Redis for the tickets watched here."""
        for ticket in self.watch.watched():
            try:
                product_id, record, position = await self.read(ticket)
            except Exception:
                logger.warning("could not read a watched ticket", extra={"ticket": ticket})
                continue
            if record is not None and record.state in FINAL_STATES:
                self.watch.answered(ticket, ticket_body(ticket, product_id, record, position))
