"""Reading a ticket of the line (GET /orders/tickets/{ticket}, its ?wait= long poll and its
event stream): the state from Redis (batched, orders/line.py), then, while it waits, the
answer as the process's one subscription hears it (TicketWatch): no Redis round trip per
waiting client."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from order_service.orders.errors import TicketNotFound
from order_service.orders.line import FINAL_STATES, OrderLine, render_ticket, ticket_body
from shared.broadcast import Feed
from shared.sse import EventStreamResponse


class TicketReads:
    def __init__(self, line: OrderLine) -> None:
        self.line = line

    async def _current(self, user_id: int, ticket: str) -> dict[str, Any]:
        """The ticket's body now; TicketNotFound if there is none, or it is someone else's."""
        product_id, record, position = await self.line.read(ticket)
        if record is None or record.user_id != user_id:
            raise TicketNotFound()
        return ticket_body(ticket, product_id, record, position)

    async def get(self, user_id: int, ticket: str, *, wait: int | None) -> dict[str, Any]:
        """The ticket; with `wait`, held until its answer is given or `wait` seconds pass (then
        the state as it is, its position read again)."""
        if not wait:
            return await self._current(user_id, ticket)
        feed = self.line.watch.open(ticket)
        try:
            body = await self._current(user_id, ticket)
            if body["state"] in FINAL_STATES:
                return body
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    return await _answer_of(feed)
            return await self._current(user_id, ticket)
        finally:
            self.line.watch.close(ticket)

    async def events(self, user_id: int, ticket: str) -> EventStreamResponse:
        """The ticket's body at once, again when its position moves (OrderLine.positions_moved),
        then its answer when it is given; the stream ends there."""
        feed = self.line.watch.open(ticket)
        try:
            body = await self._current(user_id, ticket)
        except BaseException:
            self.line.watch.close(ticket)
            raise
        if feed.closed and feed.value is not None:
            body = feed.value  # answered while it was read
        if body["state"] not in FINAL_STATES:
            self.line.watch.shown(ticket, body["position"])
        if body["state"] in FINAL_STATES:
            self.line.watch.close(ticket)
            done: Feed[dict[str, Any] | None] = Feed(body, render_ticket, min_interval=0.0)
            done.update(body, final=True)
            return EventStreamResponse(done, render_ticket(body), on_close=done.discard)
        return EventStreamResponse(feed, render_ticket(body),
                                   on_close=lambda: self.line.watch.close(ticket))


async def _answer_of(feed: Feed[dict[str, Any] | None]) -> dict[str, Any]:
    while not (feed.closed and feed.value is not None):
        await feed.wait()
    return feed.value
