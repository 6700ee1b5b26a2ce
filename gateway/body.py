"""Bodies in and out: the client's request body read within a size limit, what is left of a
refused one drained, and an upstream's response read within a size limit."""

from __future__ import annotations

import aiohttp
from starlette.types import Receive


class BodyTooLarge(Exception):
    def __init__(self, *, more: bool) -> None:
        super().__init__("request body over the limit")
        self.more = more  # the client is still sending


class ClientDisconnected(Exception):
    """The client hung up before its request body was in."""


async def read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        more = message.get("more_body", False)
        if size > limit:
            raise BodyTooLarge(more=more)
        chunks.append(chunk)
    return b"".join(chunks)


async def discard_rest(receive: Receive, *, budget: int) -> None:
    """Read and drop what the client is still sending, up to a bound (a lingering close, as
    nginx does)."""
    while budget > 0:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def read_bounded(stream: aiohttp.StreamReader, limit: int) -> bytes | None:
    """The whole body, or None past `limit` bytes: a service gone wrong must not make the
    gateway buffer without end. (A single read(n) would return only what has arrived so far.)"""
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream.iter_any():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
