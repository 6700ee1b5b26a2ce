"""Server-sent events (text/event-stream) as a plain ASGI response, one per open stream.

A stream is cheap: it sends its first event, then waits on its topic's shared `Feed` (see
shared/broadcast.py), sending the feed's pre-rendered event whenever the feed moves on, a
comment line when nothing was sent for `heartbeat_seconds` (so proxies and clients keep an idle
connection open), and ends after the feed's final event. A client that goes away ends it at
once: the client's disconnect is watched beside the feed, never discovered by a failed write.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from shared.broadcast import Feed

MEDIA_TYPE = "text/event-stream"
HEARTBEAT = b": keep-alive\n\n"
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-store"),
    # Tells nginx-like proxies in front not to buffer the stream.
    (b"x-accel-buffering", b"no"),
]


def sse_event(data: Any, *, event: str | None = None, event_id: str | None = None) -> bytes:
    """One event: `data` as compact JSON on one data line."""
    lines = []
    if event is not None:
        lines.append(f"event: {event}")
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()


async def _until_disconnected(receive: Receive) -> None:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return


class EventStreamResponse(Response):
    """Sends `first`, then every change of `feed` (its `rendered` bytes), a comment line on
    each of the feed's beats, until the feed's final value has been sent or the client leaves."""

    media_type = MEDIA_TYPE

    def __init__(self, feed: Feed[Any], first: bytes, *,
                 on_close: Callable[[], None] = lambda: None) -> None:
        super().__init__(status_code=200)
        self.feed = feed
        self.first = first
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._stream(scope, receive, send)
        finally:
            self.on_close()

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        feed = self.feed
        seen = feed.version
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.body", "body": self.first, "more_body": not feed.closed})
        if feed.closed:
            return
        waiting: list[asyncio.Future[None]] = []
        gone = asyncio.ensure_future(_until_disconnected(receive))

        def client_left(_: asyncio.Future[None]) -> None:
            for waiter in waiting:
                if not waiter.done():
                    waiter.set_result(None)

        gone.add_done_callback(client_left)
        try:
            while True:
                waiter = feed.wait()
                waiting[:] = (waiter,)
                await waiter
                if gone.done():
                    return
                if feed.version == seen:
                    await send({"type": "http.response.body", "body": HEARTBEAT,
                                "more_body": True})
                    continue
                seen = feed.version
                await send({"type": "http.response.body", "body": feed.rendered,
                            "more_body": not feed.closed})
                if feed.closed:
                    return
        finally:
            gone.remove_done_callback(client_left)
            gone.cancel()
