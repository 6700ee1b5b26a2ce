"""Streamed responses (server-sent events) relayed as they come, never buffered.

A route marked `stream` in the route table is forwarded through a pool of its own (`Upstreams.
streams`), so thousands of open streams never take the connections ordinary requests need,
with no total timeout (a stream lasts as long as its client wants it) and a read timeout of
`stream_idle_timeout_seconds` (the upstream sends a comment line every 15 s; past that much
silence it is gone). An upstream answer that is not an event stream (an error, a 404) is
relayed like any other. A client that leaves ends the upstream request at once.

A stream that is the same for every client (`Route(..., shared=True)`, /live) is not relayed
per client: gateway/fanout.py opens one upstream stream per URL and writes it to all of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
from starlette.types import Message, Receive, Send

from gateway.body import read_bounded

STREAM_MEDIA_TYPE = "text/event-stream"


async def until_disconnected(receive: Receive) -> None:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return


class StreamRelay:
    """Relays one upstream response to the client: an event stream chunk by chunk, anything
    else whole (bounded by `max_response_bytes`)."""

    def __init__(self, *, max_response_bytes: int) -> None:
        self.max_response_bytes = max_response_bytes

    async def relay(self, upstream: aiohttp.ClientResponse, headers: list[tuple[bytes, bytes]],
                    receive: Receive, send: Send, *,
                    oversized: Callable[[], Awaitable[None]]) -> None:
        status = upstream.status
        if upstream.content_type != STREAM_MEDIA_TYPE or status != 200:
            payload = await read_bounded(upstream.content, self.max_response_bytes)
            if payload is None:
                await oversized()
                return
            headers.append((b"content-length", str(len(payload)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        # The client's leaving cancels this task (the relay waits on the upstream alone, so
        # an open stream costs one extra task, not one per chunk).
        relaying = asyncio.current_task()
        assert relaying is not None
        gone = asyncio.ensure_future(until_disconnected(receive))

        def client_left(_: asyncio.Future[None]) -> None:
            if not gone.cancelled():  # cancelled: by the finally below, the relay is over
                relaying.cancel()

        gone.add_done_callback(client_left)
        try:
            async for chunk in upstream.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except asyncio.CancelledError:
            if not gone.done() or gone.cancelled():
                raise
            relaying.uncancel()
            return  # the client left: nobody to finish the response for
        except (aiohttp.ClientError, TimeoutError):
            pass  # the upstream went away or fell silent: end the stream; the client reconnects
        finally:
            gone.remove_done_callback(client_left)
            gone.cancel()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
