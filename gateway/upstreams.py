"""The upstream pool: one pooled aiohttp session per service, created in the lifespan."""

from __future__ import annotations

import aiohttp

from gateway.settings import Settings
from shared import replicas
from shared.tracing import client_trace_configs

# Below uvicorn's keep-alive timeout (5 s), so an idle pooled connection is closed here
# before the upstream closes it under a request that could not safely be retried.
UPSTREAM_KEEPALIVE_SECONDS = 4.0


class Upstreams:
    """One pooled aiohttp session per upstream service, created in the lifespan."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base_urls = settings.upstreams()
        self.sessions: dict[str, aiohttp.ClientSession] = {}
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

    async def start(self) -> None:
        for name in self.base_urls:
            # A name with several replicas behind it resolves to each one's address; aiohttp
            # spreads new connections over them in turn, tries the next when one does not
            # connect, and asks again every few seconds (shared/replicas.py).
            connector = replicas.connector(limit=self.settings.max_connections_per_upstream,
                                           keepalive_timeout=UPSTREAM_KEEPALIVE_SECONDS,
                                           hosts=self.settings.service_hosts)
            # No cookie jar: a Set-Cookie in one client's answer is that client's, passed on to
            # it, never kept in a pool every user's requests share.
            session = aiohttp.ClientSession(
                connector=connector, timeout=self.timeout, auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
                trace_configs=client_trace_configs(),
            )
            # aiohttp would resend PUT and DELETE too when a pooled connection turns out
            # closed (they are idempotent by the RFC); the proxy decides what is retried
            # (gateway.proxy._RETRYABLE_METHODS). The attribute has no public setter.
            session._retry_connection = False
            self.sessions[name] = session
        self._streams = aiohttp.ClientSession(
            connector=replicas.connector(limit=self.settings.max_open_streams,
                                         keepalive_timeout=UPSTREAM_KEEPALIVE_SECONDS,
                                         hosts=self.settings.service_hosts),
            timeout=self.stream_timeout, auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            trace_configs=client_trace_configs())
        self._streams._retry_connection = False

    @property
    def streams(self) -> aiohttp.ClientSession:
        if self._streams is None:
            raise RuntimeError("upstream pools used outside the gateway's lifespan")
        return self._streams

    async def close(self) -> None:
        for session in self.sessions.values():
            await session.close()
        self.sessions.clear()
        if self._streams is not None:
            await self._streams.close()
            self._streams = None
