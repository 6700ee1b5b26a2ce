"""The upstream pools, created in the lifespan: per service one pooled aiohttp session for
ordinary requests (GATEWAY_MAX_CONNECTIONS_PER_UPSTREAM) and one for long polls
(GATEWAY_MAX_HELD_CONNECTIONS_PER_UPSTREAM), and one
for every service's streams; and the addresses each service's name stands for (several replicas
behind one name), one per request in turn.

Each request is sent to the next address (shared/replicas.py `Replicas`), by address, with the
name in its Host header: the pool then keeps connections per replica, and a steady flow reaches
every replica. Choosing only when a connection opens would not: a quiet gateway reuses one
keep-alive connection per upstream, so every request went to whichever replica that connection
reached, and a replica that joined got nothing until the pool needed a new connection.
"""

from __future__ import annotations

import asyncio

import aiohttp
from yarl import URL

from gateway.settings import Settings
from shared import replicas
from shared.in_order import InOrderConnector
from shared.signed_on_send import SignedOnSend
from shared.tracing import client_trace_configs

# Below uvicorn's keep-alive timeout (5 s), so an idle pooled connection is closed here
# before the upstream closes it under a request that could not safely be retried.
UPSTREAM_KEEPALIVE_SECONDS = 4.0
# The longest a request's last attempt waits for its connect: past the connect timeout, which
# a busy loop can run before it sees a connect complete, but not as long as an answer: an
# address that takes no connection is given up in seconds, and the client, answered 503, may
# ask again.
LAST_CONNECT_SECONDS = 2.5


class Upstreams:
    """The pooled aiohttp sessions (ordinary, long polls, streams), created in the lifespan."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base_urls = settings.upstreams()
        self.sessions: dict[str, aiohttp.ClientSession] = {}
        # Long polls (a ticket's ?wait=), which their service holds for up to its wait: a pool
        # of their own per service (GATEWAY_MAX_HELD_CONNECTIONS_PER_UPSTREAM), so that buyers
        # polling their tickets never take the connections anyone's order needs, and yet open
        # no more connections to a service than that. A held stream's reads of its ticket
        # (short, and spread: proxy.held_refresh_after) go through it too, never among the
        # orders waiting for the ordinary pool.
        self.held: dict[str, aiohttp.ClientSession] = {}
        self._looking_again = False
        self._resolver: replicas.Resolver | None = None
        # None for an https upstream: over TLS the name stays in the URL (the certificate is
        # checked against it), and aiohttp resolves it.
        self._replicas: dict[str, replicas.Replicas | None] = {}
        # Streamed routes' own pool (gateway/streams.py), for every upstream.
        self._streams: aiohttp.ClientSession | None = None
        self.stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=settings.connect_timeout_seconds,
            sock_read=settings.stream_idle_timeout_seconds)
        self.timeout = aiohttp.ClientTimeout(
            total=settings.connect_timeout_seconds + settings.upstream_timeout_seconds * 3,
            sock_connect=settings.connect_timeout_seconds,
            sock_read=settings.upstream_timeout_seconds,
        )

    def last_address(self, timeout: aiohttp.ClientTimeout) -> aiohttp.ClientTimeout:
        """`timeout` for a request's last attempt: no other address is left to move on to, so
        its connect is waited for longer (a loop busy for longer than the connect timeout runs
        that timer before it sees a connect that completed). At most LAST_CONNECT_SECONDS."""
        return aiohttp.ClientTimeout(
            total=timeout.total, connect=timeout.connect, sock_read=timeout.sock_read,
            sock_connect=min(self.settings.upstream_timeout_seconds, LAST_CONNECT_SECONDS))

    def held_timeout(self, held_seconds: float) -> aiohttp.ClientTimeout:
        """The request timeout for a request its service holds `held_seconds` on purpose (a
        long poll): that much longer to read its answer."""
        return aiohttp.ClientTimeout(
            total=(self.timeout.total or 0) + held_seconds,
            sock_connect=self.timeout.sock_connect,
            sock_read=(self.timeout.sock_read or 0) + held_seconds)

    async def start(self) -> None:
        self._resolver = replicas.Resolver(self.settings.service_hosts)
        for name, base_url in self.base_urls.items():
            url = URL(base_url)
            self._replicas[name] = (replicas.Replicas(url.raw_host or "", url.port or 80,
                                                      self._resolver)
                                    if url.scheme == "http" else None)
            # Requests go by address (`urls`); the connector resolves a name itself only for
            # the shared streams, which are opened by name.
            self.sessions[name] = self._session(self.settings.max_connections_per_upstream,
                                                self.timeout)
            self.held[name] = self._session(self.settings.max_held_connections_per_upstream,
                                            self.timeout)
        self._streams = self._session(self.settings.max_open_streams, self.stream_timeout)

    def _session(self, limit: int, timeout: aiohttp.ClientTimeout) -> aiohttp.ClientSession:
        # No cookie jar: a Set-Cookie in one client's answer is that client's, passed on to it,
        # never kept in a pool every user's requests share.
        session = aiohttp.ClientSession(
            connector=replicas.connector(limit=limit,
                                         keepalive_timeout=UPSTREAM_KEEPALIVE_SECONDS,
                                         hosts=self.settings.service_hosts),
            timeout=timeout, auto_decompress=False, request_class=SignedOnSend,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            trace_configs=client_trace_configs())
        # aiohttp would resend PUT and DELETE too when a pooled connection turns out closed
        # (they are idempotent by the RFC); the proxy decides what is retried
        # (gateway.proxy._RETRYABLE_METHODS). The attribute has no public setter.
        session._retry_connection = False
        return session

    def look_again_soon(self) -> None:
        """Every request waiting for a connection of the ordinary pools has its last look run
        again (shared/in_order.py), once this loop turn is over: an edge answer came in force
        (as many as come in one turn, from a message or a reload, cost one round of looks)."""
        if not self._looking_again:
            self._looking_again = True
            asyncio.get_running_loop().call_soon(self._look_again)

    def _look_again(self) -> None:
        self._looking_again = False
        for session in self.sessions.values():
            if isinstance(session.connector, InOrderConnector):
                session.connector.look_again()

    async def urls(self, service: str, url: URL) -> list[URL]:
        """The URLs a request's attempts take, in order: `url` (at the service's name) at the
        next address in turn, then at each other address (one whose connect failed lately
        last), then a last try, which waits longest for its connect (last_address): here at
        the first again, but sent where `last_try` says when it comes to that. OSError: the
        name is unknown."""
        turn = self._replicas[service]
        if turn is None:
            return [url, url]
        host = url.raw_host
        urls = [url if address == host else url.with_host(address)
                for address in await turn.turn()]
        return [*urls, urls[0]]

    def last_try(self, service: str, urls: list[URL]) -> URL:
        """Where a request's last try goes, once each address's short connect failed: the
        address answered most lately (a killed replica's has answered nothing since it died,
        and hangs), else the first in the request's turn (make swarm-check: 348 requests
        answered 503 when a killed replica's address was first in turn again 5 s after the
        kill, and the live replica's short connect timed out on a busy loop)."""
        turn = self._replicas[service]
        if turn is None:
            return urls[-1]
        by_address = {u.raw_host or "": u for u in urls}  # in the request's turn
        return by_address[turn.likeliest(list(by_address))]

    def answered(self, service: str, url: URL) -> None:
        """The address of `url` answered a request."""
        turn = self._replicas[service]
        if turn is not None:
            turn.answered(url.raw_host or "")

    def failed(self, service: str, url: URL) -> None:
        """A connect to the address of `url` failed: the next requests try it last for a
        while."""
        turn = self._replicas[service]
        if turn is not None:
            turn.failed(url.raw_host or "")

    @property
    def streams(self) -> aiohttp.ClientSession:
        if self._streams is None:
            raise RuntimeError("upstream pools used outside the gateway's lifespan")
        return self._streams

    async def close(self) -> None:
        for session in (*self.sessions.values(), *self.held.values()):
            await session.close()
        self.sessions.clear()
        self.held.clear()
        if self._streams is not None:
            await self._streams.close()
            self._streams = None
        if self._resolver is not None:
            await self._resolver.close()
            self._resolver = None
