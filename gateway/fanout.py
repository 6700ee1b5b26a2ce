"""Shared streams: one upstream stream per URL, written to every client that asks for it.

A route whose stream is the same for every client (`Route(..., shared=True)`: public, no
identity, and every event a whole state that supersedes the one before, as /live's are) is not
relayed once per client. The first client of a URL opens ONE upstream stream, with headers of
the gateway's own (no client's header and no identity reach it); every client of that URL is
written each upstream chunk by the one task that reads it, and the newest event is kept, so a
client that joins later (or reconnects with Last-Event-ID) gets the current state at once, as
it would from the service.

An event costs one read upstream and, per client, one write: no task wakes per client per
event. Each write is started in the reading task (`start_eagerly`); one that completes at once
(the usual case: the client's socket has room) costs no scheduling at all. One that must wait
(a client reading slowly, its buffers full) is finished by a task of that client's, and
meanwhile the client is owed only the newest event (`pending`: one at most, the others being
superseded), so a slow client costs bounded memory and never delays the others. A client whose
write has waited `stall_seconds` is dropped (its connection closed; it reconnects).

The upstream ending (a deleted product: its final event, then the end) ends every client. The
upstream failing (a restart, silence past the idle timeout) is opened again with the clients
kept, for up to `reopen_seconds`, and its first event (the current state) is passed on like any
other. A non-stream answer (404, 503) goes to the clients waiting for the first open, and
nothing is kept: the next client asks again. The last client leaving closes the upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from types import CoroutineType
from typing import Any

import aiohttp
from starlette.types import Receive, Send

from gateway.body import read_bounded
from gateway.streams import STREAM_MEDIA_TYPE, until_disconnected

logger = logging.getLogger("gateway.fanout")

# What the proxy hands over: how to open the upstream stream, and how to answer a client when
# it cannot be opened (the error, or None for an oversized answer).
Opener = Callable[[], AbstractAsyncContextManager[aiohttp.ClientResponse]]
Unavailable = Callable[[Send, BaseException | None], Awaitable[None]]
# How a waiting client is answered instead of streamed: run in the client's own request.
Refusal = Callable[[Send], Awaitable[None]]

# An SSE event ends with an empty line (LF or CRLF line ends).
_EVENT_END = re.compile(rb"\r?\n\r?\n")
# A failed upstream is asked again this often while clients wait for it.
REOPEN_DELAY_SECONDS = 0.5
REOPEN_SECONDS = 10.0
# A kept event is replayed to a newcomer only this long after it came: an event may carry the
# server's clock (/live's server_time, which a countdown counts from), so an older one would
# start the newcomer's countdown late. Past it, the upstream stream is opened again and the
# newcomer gets its first event, rendered now (the others get it only if its id is new).
REPLAY_MAX_AGE_SECONDS = 0.5
_ID_LINE = re.compile(rb"^id:[ ]?(.*?)\r?$", re.MULTILINE)
# An upstream that sends this much without ending an event is broken.
MAX_PARTIAL_EVENT_BYTES = 1 << 20


class BrokenStream(Exception):
    """The upstream sent something that is not a stream of events."""


def start_eagerly(awaitable: Awaitable[None], *,
                  timeout: float) -> asyncio.Task[None] | None:
    """Runs `awaitable` now, in the caller's task, as far as it goes without waiting. None: it
    completed so (no task made, nothing scheduled). Otherwise the task that finishes it, failing
    with TimeoutError if that takes longer than `timeout`. Errors raised before the first wait
    are the caller's."""
    # (An ASGI send is a coroutine; CoroutineType is checked in C, not through the ABC.)
    coro = awaitable if isinstance(awaitable, CoroutineType) else _awaited(awaitable)
    try:
        blocker = coro.send(None)
    except StopIteration:
        return None
    except BaseException:
        coro.close()
        raise
    return asyncio.ensure_future(_finish(coro, blocker, timeout))


async def _awaited(awaitable: Awaitable[None]) -> None:
    await awaitable


async def _finish(coro: Coroutine[Any, Any, None], blocker: Any, timeout: float) -> None:
    """Drives `coro` on from where start_eagerly left it, as a task would: it waits on the
    future `coro` yielded, then resumes it (which reads that future's result or error)."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                if isinstance(blocker, asyncio.Future):
                    blocker._asyncio_future_blocking = False
                    await asyncio.wait((blocker,))
                else:  # a bare yield: one turn of the loop
                    await asyncio.sleep(0)
                try:
                    blocker = coro.send(None)
                except StopIteration:
                    return
    finally:
        coro.close()


class _Client:
    """One client of a shared stream: what it has been written, and what it is owed."""

    __slots__ = ("began", "ending", "last_write", "over", "pending", "send", "stall_seconds",
                 "writing")

    def __init__(self, send: Send, stall_seconds: float) -> None:
        self.send = send
        self.stall_seconds = stall_seconds
        # Resolved when the client's part is over: None (ended or dropped), or how to answer
        # it instead (the stream could not be opened).
        self.over: asyncio.Future[Refusal | None] = asyncio.get_running_loop().create_future()
        self.began = False
        self.writing: asyncio.Task[None] | None = None  # a write waiting on the client
        self.pending: bytes | None = None  # owed once that write is done: the newest only
        self.ending = False  # the response ends after what is owed
        self.last_write = False  # the write under way is the response's last

    @property
    def done(self) -> bool:
        return self.over.done()

    def finish(self, refusal: Refusal | None = None) -> None:
        if not self.over.done():
            self.over.set_result(refusal)
        if self.writing is not None:
            self.writing.cancel()
            self.writing = None

    def begin(self, head: list[tuple[bytes, bytes]], first: bytes | None) -> None:
        self.began = True
        self._start(self._begin(head, first), last=False)

    async def _begin(self, head: list[tuple[bytes, bytes]], first: bytes | None) -> None:
        await self.send({"type": "http.response.start", "status": 200, "headers": head})
        if first is not None:
            await self.send({"type": "http.response.body", "body": first, "more_body": True})

    def write(self, data: bytes, newest_event: bytes | None) -> None:
        """`data`: whole events (and comment lines) as read; `newest_event`: the last event in
        them, what a client whose write is still waiting is owed instead."""
        if self.done or not self.began:
            return
        if self.writing is not None:
            if newest_event is not None:
                self.pending = newest_event
            elif self.pending is None:
                self.pending = data  # only comment lines: keep-alive
            return
        self._start(self.send({"type": "http.response.body", "body": data, "more_body": True}),
                    last=False)

    def end(self) -> None:
        """The stream is over: the response ends once what is owed is written."""
        if self.done:
            return
        if not self.began:
            self.finish()
            return
        if self.writing is not None:
            self.ending = True
            return
        self._start(self.send({"type": "http.response.body", "body": b"", "more_body": False}),
                    last=True)

    def _start(self, write: Awaitable[None], *, last: bool) -> None:
        try:
            waiting = start_eagerly(write, timeout=self.stall_seconds)
        except Exception:
            logger.exception("shared stream write failed")
            self.finish()
            return
        if waiting is None:
            if last:
                self.finish()
            return
        self.writing, self.last_write = waiting, last
        waiting.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[None]) -> None:
        if task is not self.writing:
            return  # cancelled by finish()
        self.writing = None
        if task.cancelled() or task.exception() is not None:
            if isinstance(task.exception(), TimeoutError):
                logger.warning("slow stream client dropped",
                               extra={"stalled_seconds": self.stall_seconds})
            self.finish()  # dropped: its connection is closed, it reconnects
            return
        if self.last_write:
            self.finish()
            return
        if self.pending is not None or self.ending:
            body, self.pending = self.pending or b"", None
            self._start(self.send({"type": "http.response.body", "body": body,
                                   "more_body": not self.ending}), last=self.ending)


def _split_events(buffer: bytes) -> tuple[int, bytes | None]:
    """Where the last whole event (or comment) in `buffer` ends, and the last event in it."""
    end = 0
    newest: bytes | None = None
    for match in _EVENT_END.finditer(buffer):
        block = buffer[end:match.end()]
        end = match.end()
        if any(line and not line.startswith(b":") for line in block.splitlines()):
            newest = block
    return end, newest


class SharedStream:
    """One upstream stream and the clients it is written to."""

    def __init__(self, key: str, registry: SharedStreams, opener: Opener,
                 unavailable: Unavailable) -> None:
        self.key = key
        self.registry = registry
        self.opener = opener
        self.unavailable = unavailable
        self.clients: set[_Client] = set()
        self.head: list[tuple[bytes, bytes]] | None = None
        self.newest_event: bytes | None = None
        self.newest_at = float("-inf")  # when it came (monotonic)
        self.newest_id: bytes | None = None
        self.refreshing = False  # opened again for a newcomer: its first event is a repeat
        self.task: asyncio.Task[None] = asyncio.ensure_future(self._run())

    def join(self, client: _Client) -> None:
        """A client is begun with the kept event while it is fresh, else with the first event
        of the upstream stream opened again for it (or of the first open)."""
        self.clients.add(client)
        if self.head is None:
            return
        if self.newest_event is not None and \
                time.monotonic() - self.newest_at <= self.registry.replay_max_age:
            client.begin(self.head, self.newest_event)
            return
        if not self.refreshing:
            self.refreshing = True
            self.task.cancel()
            self.task = asyncio.ensure_future(self._run())

    def leave(self, client: _Client) -> None:
        client.finish()
        self.clients.discard(client)
        if not self.clients:
            self.close()

    def close(self) -> None:
        self.registry.forget(self)
        self.task.cancel()

    async def _run(self) -> None:
        try:
            await self._relay()
        except Exception as error:
            # Never leave clients waiting on a reader that is gone.
            logger.exception("shared stream failed", extra={"stream": self.key})
            if self.head is None:
                self._refuse(self._unavailable_because(error))
            else:
                self.end()

    async def _relay(self) -> None:
        failed_since: float | None = None
        while True:
            try:
                async with self.opener() as upstream:
                    if upstream.status != 200 or upstream.content_type != STREAM_MEDIA_TYPE:
                        await self._not_a_stream(upstream)
                        return
                    if self.head is None:
                        self.head = [(k.lower(), v) for k, v in upstream.raw_headers
                                     if k.lower() not in self.registry.drop_headers]
                    failed_since = None
                    await self._pump(upstream)
                self.end()  # the upstream ended its stream: so does every client
                return
            except (aiohttp.ClientError, TimeoutError) as error:
                if self.head is None:
                    self._refuse(self._unavailable_because(error))
                    return
                logger.warning("shared stream lost; reopening",
                               extra={"stream": self.key, "error": repr(error)})
            except BrokenStream as error:
                logger.warning("shared stream broken", extra={"stream": self.key,
                                                              "error": str(error)})
                self.end()
                return
            now = time.monotonic()
            failed_since = failed_since or now
            if now - failed_since >= self.registry.reopen_seconds:
                self.end()
                return
            await asyncio.sleep(REOPEN_DELAY_SECONDS)

    def _unavailable_because(self, error: BaseException | None) -> Refusal:
        async def answer(send: Send) -> None:
            await self.unavailable(send, error)

        return answer

    async def _not_a_stream(self, upstream: aiohttp.ClientResponse) -> None:
        """An answer that is not an event stream (404, 503): relayed to the clients waiting for
        a first event; the streams of the others end (they reconnect, and get it)."""
        payload = await read_bounded(upstream.content, self.registry.max_response_bytes)
        if payload is None:
            self._refuse(self._unavailable_because(None))
            return
        headers = [(k.lower(), v) for k, v in upstream.raw_headers
                   if k.lower() not in self.registry.drop_headers]
        headers.append((b"content-length", str(len(payload)).encode()))
        status = upstream.status

        async def answer(send: Send) -> None:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": payload})

        self._refuse(answer)

    async def _pump(self, upstream: aiohttp.ClientResponse) -> None:
        """Writes whole events to every client as they come, until the upstream ends."""
        buffer = b""
        async for chunk in upstream.content.iter_any():
            buffer += chunk
            end, newest = _split_events(buffer)
            if end == 0:
                if len(buffer) > MAX_PARTIAL_EVENT_BYTES:
                    raise BrokenStream("an event longer than the limit")
                continue
            data, buffer = buffer[:end], buffer[end:]
            repeat = False
            if newest is not None:
                found = _ID_LINE.search(newest)
                newest_id = found[1] if found else None
                # The first event after opening again for a newcomer: the others have it
                # already unless its id is new (a change between the two streams).
                repeat = self.refreshing and newest_id is not None and \
                    newest_id == self.newest_id and newest == data
                self.refreshing = False
                self.newest_event, self.newest_at, self.newest_id = \
                    newest, time.monotonic(), newest_id
            for client in list(self.clients):
                if not client.began:
                    if newest is not None:
                        client.begin(self.head or [], newest)
                elif not repeat:
                    client.write(data, newest)
        if buffer:
            for client in list(self.clients):
                client.write(buffer, None)

    def _refuse(self, refusal: Refusal) -> None:
        """Clients still waiting for a first event get `refusal`; the others' streams end."""
        self.registry.forget(self)
        for client in list(self.clients):
            if client.began:
                client.end()
            else:
                client.finish(refusal)

    def end(self) -> None:
        self._refuse(self._unavailable_because(BrokenStream("ended before its first event")))


class SharedStreams:
    """The shared streams of one gateway process, by key (the upstream URL)."""

    def __init__(self, *, drop_headers: frozenset[bytes], max_response_bytes: int,
                 stall_seconds: float, reopen_seconds: float = REOPEN_SECONDS,
                 replay_max_age: float = REPLAY_MAX_AGE_SECONDS) -> None:
        self.drop_headers = drop_headers
        self.replay_max_age = replay_max_age
        self.max_response_bytes = max_response_bytes
        self.stall_seconds = stall_seconds
        self.reopen_seconds = reopen_seconds
        self.streams: dict[str, SharedStream] = {}

    def forget(self, stream: SharedStream) -> None:
        if self.streams.get(stream.key) is stream:
            del self.streams[stream.key]

    async def serve(self, key: str, opener: Opener, unavailable: Unavailable,
                    receive: Receive, send: Send) -> None:
        """One client's request: the stream of `key`, shared, until it ends or the client
        leaves. `opener` is used only when this client is the first of its key."""
        stream = self.streams.get(key)
        if stream is None:
            stream = self.streams[key] = SharedStream(key, self, opener, unavailable)
        client = _Client(send, self.stall_seconds)
        gone = asyncio.ensure_future(until_disconnected(receive))
        gone.add_done_callback(lambda _: client.finish())
        stream.join(client)
        try:
            refusal = await client.over
            if refusal is not None and not gone.done():
                await refusal(send)
        finally:
            gone.cancel()
            stream.leave(client)

    async def close(self) -> None:
        """Ends every stream (the gateway is stopping)."""
        streams = list(self.streams.values())
        for stream in streams:
            stream.end()
            stream.task.cancel()
        for stream in streams:
            with contextlib.suppress(asyncio.CancelledError):
                await stream.task
