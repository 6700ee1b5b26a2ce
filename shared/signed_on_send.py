"""Requests whose identity signature is made once their connection is in hand.

A service refuses a signature older than IDENTITY_MAX_AGE_SECONDS, and a request can wait a
long time before it is written: for a free connection in a busy pool, or for a connect to a
replica slow to accept one. Signed before that wait, it could reach a live service already
aged (make swarm-check: 82 ticket streams refused as aged after a replica was killed). aiohttp
builds a request before it asks its connector for a connection and writes it, in
`ClientRequest.send`, once it has one; the signature is added there.

A session made with `request_class=SignedOnSend` signs what `signed_request` sends through
it. The signing function reaches `send` in a context variable: aiohttp builds its request
inside the session from the session's own arguments, and takes nothing else from the caller.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

import aiohttp
from aiohttp.connector import Connection

SignatureHeaders = Callable[[], Iterable[tuple[str, str]]]

_PENDING: ContextVar[SignatureHeaders | None] = ContextVar("pending_signature", default=None)


class SignedOnSend(aiohttp.ClientRequest):
    """Adds the headers of the pending signature, made now, just before the request is
    written to the connection it was given."""

    async def send(self, conn: Connection) -> aiohttp.ClientResponse:
        sign = _PENDING.get()
        if sign is not None:
            for name, value in sign():
                self.headers[name] = value
        return await super().send(conn)


@asynccontextmanager
async def signed_request(session: aiohttp.ClientSession, method: str, url: Any, *,
                         sign: SignatureHeaders,
                         **kwargs: Any) -> AsyncIterator[aiohttp.ClientResponse]:
    """`session.request(method, url, **kwargs)`, with the headers `sign()` answers made when
    its connection is in hand (each attempt calls it anew: a fresh nonce). The session must
    have been made with `request_class=SignedOnSend`."""
    token = _PENDING.set(sign)
    try:
        async with session.request(method, url, **kwargs) as response:
            yield response
    finally:
        _PENDING.reset(token)
