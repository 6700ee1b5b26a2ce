"""Forwarding: match the route, check the token, strip identity headers, pass the request on.

Written as raw ASGI with one pooled aiohttp session per upstream: this is the hot path of
every request, and aiohttp's pool holds up under concurrency where httpx's collapses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable
from typing import Any

import aiohttp
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from yarl import URL

from gateway.auth import Identity, JwksCache, KeysUnavailable, TokenRejected, TokenVerifier
from gateway.routes import RouteTable
from gateway.settings import Settings
from shared.contracts import CLIENT_IP_HEADER, SESSION_ID_HEADER, USER_ID_HEADER
from shared.errors import problem_document
from shared.request_context import current_request_id

logger = logging.getLogger("gateway.proxy")

# Hop-by-hop headers (RFC 9110 7.6.1) and headers the gateway alone may set.
_HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
    b"trailer", b"transfer-encoding", b"upgrade", b"host", b"content-length", b"expect",
})
_IDENTITY = frozenset({
    b"x-user-id", b"x-session-id", b"x-request-id", b"x-forwarded-for", b"x-real-ip",
    b"forwarded", b"x-forwarded-host", b"x-forwarded-proto",
})
_RESPONSE_DROP = frozenset({
    b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"date", b"server",
    b"x-request-id", b"upgrade", b"trailer",
})


def is_identity_header(name: bytes) -> bool:
    """`name` is lower case. Some servers (CGI-style mappings, some proxies) fold `_` into `-`,
    so `x_user_id` is as much an identity header as `x-user-id`."""
    canonical = name.replace(b"_", b"-")
    return canonical in _IDENTITY or canonical.startswith(b"x-internal-")


# A HEAD answer has no body; its Content-Length is the upstream's, describing the GET body.
_HEAD_RESPONSE_DROP = _RESPONSE_DROP - {b"content-length"}
_RETRYABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# Below uvicorn's keep-alive timeout (5 s), so an idle pooled connection is closed here
# before the upstream closes it under a request that could not safely be retried.
UPSTREAM_KEEPALIVE_SECONDS = 4.0

PROBLEM_TITLES = {
    401: "Authentication required",
    404: "Not found",
    408: "Request timeout",
    413: "Payload too large",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}


class BodyTooLarge(Exception):
    def __init__(self, *, more: bool) -> None:
        super().__init__("request body over the limit")
        self.more = more  # the client is still sending


class ClientDisconnected(Exception):
    """The client hung up before its request body was in."""


def problem_body(status: int, code: str, detail: str, **extra: Any) -> bytes:
    document = problem_document(status, code, PROBLEM_TITLES.get(status, "Error"), detail, extra)
    return json.dumps(document, separators=(",", ":")).encode()


async def send_problem(send: Send, status: int, code: str, detail: str,
                       headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    body = problem_body(status, code, detail)
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            *headers,
        ],
    })
    await send({"type": "http.response.body", "body": body})


def client_address(scope: Scope, trusted_proxy_count: int) -> str:
    """The socket peer, or the X-Forwarded-For entry added by the farthest trusted proxy."""
    peer = scope.get("client")
    peer_host = peer[0] if peer else "unknown"
    if trusted_proxy_count == 0:
        return str(peer_host)
    entries: list[str] = []
    for name, value in scope["headers"]:
        if name == b"x-forwarded-for":
            entries.extend(p.strip() for p in value.decode("latin-1").split(",") if p.strip())
    if len(entries) >= trusted_proxy_count:
        return entries[-trusted_proxy_count]
    return str(peer_host)


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


async def _discard_rest(receive: Receive, *, budget: int) -> None:
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


def relative_location(location: bytes, base_url: str) -> bytes:
    """An upstream's redirect to its own address (built from the Host the gateway sent, as
    FastAPI's trailing-slash redirect is), made relative: clients never see a private address."""
    base = base_url.rstrip("/").encode()
    rest = location[len(base):]
    if location.startswith(base) and rest[:1] in (b"", b"/", b"?"):
        return rest if rest.startswith(b"/") else b"/" + rest
    return location


class Upstreams:
    """One pooled aiohttp session per upstream service, created in the lifespan."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base_urls = settings.upstreams()
        self.sessions: dict[str, aiohttp.ClientSession] = {}
        self.timeout = aiohttp.ClientTimeout(
            total=settings.connect_timeout_seconds + settings.upstream_timeout_seconds * 3,
            sock_connect=settings.connect_timeout_seconds,
            sock_read=settings.upstream_timeout_seconds,
        )

    async def start(self) -> None:
        for name in self.base_urls:
            connector = aiohttp.TCPConnector(
                limit=self.settings.max_connections_per_upstream,
                keepalive_timeout=UPSTREAM_KEEPALIVE_SECONDS,
                ttl_dns_cache=300,
            )
            self.sessions[name] = aiohttp.ClientSession(
                connector=connector, timeout=self.timeout, auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            )

    async def close(self) -> None:
        for session in self.sessions.values():
            await session.close()
        self.sessions.clear()


class Proxy:
    """ASGI middleware: paths in the route table are forwarded; anything else goes on to `app`."""

    def __init__(self, app: ASGIApp, *, runtime: GatewayRuntime) -> None:
        self.app = app
        self.runtime = runtime
        self.settings = runtime.settings
        self.table = runtime.table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        match = self.table.match(scope["method"], scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        scope["gateway.route"] = match.route.pattern
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.forward(scope, receive, tracking_send, match.route.service, match.public)
        except Exception:
            # The proxy runs in front of FastAPI's error handling, so it answers for itself:
            # a problem+json 500 with the request id, never a bare traceback page.
            logger.exception("proxy failure")
            if started:
                raise
            await send_problem(send, 500, "internal_error", "The gateway could not complete the request.")

    async def forward(self, scope: Scope, receive: Receive, send: Send, service: str,
                      public: bool) -> None:
        settings = self.settings
        authorization: str | None = None
        content_length: int | None = None
        expects_continue = False
        headers: list[tuple[str, str]] = []
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.lower()
            if name == b"authorization":
                authorization = raw_value.decode("latin-1")
            elif name == b"expect":
                expects_continue = raw_value.lower() == b"100-continue"
            elif name == b"content-length":
                try:
                    content_length = int(raw_value)
                except ValueError:
                    content_length = settings.max_body_bytes + 1
            if name in _HOP_BY_HOP or is_identity_header(name):
                continue
            headers.append((raw_name.decode("latin-1"), raw_value.decode("latin-1")))

        # Refuse an oversized body before buffering any of it, when the client says its size.
        if content_length is not None and content_length > settings.max_body_bytes:
            small_enough = not expects_continue and content_length <= 4 * settings.max_body_bytes
            await self._refuse_body(receive, send, discard=content_length if small_enough else 0)
            return

        identity: Identity | None = None
        if not public:
            try:
                identity = await self.runtime.verifier.verify(authorization)
            except TokenRejected as rejected:
                await send_problem(send, 401, rejected.code, rejected.detail,
                                   [(b"www-authenticate", b'Bearer realm="api"')])
                return
            except (RedisError, KeysUnavailable) as exc:
                # Fail closed: without the revocation list a logged-out token could pass, and
                # without keys no token can be checked at all.
                logger.error("token check unavailable", extra={"error": repr(exc)})
                await send_problem(send, 503, "upstream_unavailable",
                                   "Sign-in state cannot be checked right now.",
                                   [(b"retry-after", b"1")])
                return

        try:
            async with asyncio.timeout(settings.body_timeout_seconds):
                body = await read_body(receive, settings.max_body_bytes)
        except BodyTooLarge as too_large:
            await self._refuse_body(receive, send,
                                    discard=4 * settings.max_body_bytes if too_large.more else 0)
            return
        except ClientDisconnected:
            return  # nobody to answer; the access log and metrics record a 499
        except TimeoutError:
            await send_problem(send, 408, "request_timeout",
                               f"The body did not arrive within {settings.body_timeout_seconds:g} s.",
                               [(b"connection", b"close")])
            return

        request_id = current_request_id() or ""
        headers.append(("X-Request-Id", request_id))
        headers.append((CLIENT_IP_HEADER, client_address(scope, settings.trusted_proxy_count)))
        if identity is not None:
            headers.append((USER_ID_HEADER, str(identity.user_id)))
            headers.append((SESSION_ID_HEADER, identity.session_id))

        raw_path = scope.get("raw_path") or scope["path"].encode()
        target = self.runtime.upstreams.base_urls[service] + raw_path.decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        await self._relay(send, service, scope["method"], URL(target, encoded=True), headers, body)

    async def _refuse_body(self, receive: Receive, send: Send, *, discard: int) -> None:
        """413, after reading and dropping up to `discard` more bytes (within the body timeout)
        so the client sees the answer instead of a connection reset."""
        if discard > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.body_timeout_seconds):
                    await _discard_rest(receive, budget=discard)
        await send_problem(send, 413, "payload_too_large",
                           f"The body is larger than {self.settings.max_body_bytes} bytes.",
                           [(b"connection", b"close")])

    async def _relay(self, send: Send, service: str, method: str, url: URL,
                     headers: list[tuple[str, str]], body: bytes) -> None:
        session = self.runtime.upstreams.sessions[service]
        drop = _HEAD_RESPONSE_DROP if method == "HEAD" else _RESPONSE_DROP
        attempts = 2 if method in _RETRYABLE_METHODS else 1
        for attempt in range(attempts):
            try:
                async with session.request(method, url, headers=headers, data=body or None,
                                           allow_redirects=False) as upstream:
                    received = await read_bounded(upstream.content, self.settings.max_response_bytes)
                    if received is None:
                        await self._upstream_error(send, service, 502, "upstream_unavailable",
                                                   "answered with an oversized response")
                        return
                    payload = received
                    status = upstream.status
                    response_headers = [
                        (k.lower(), v) for k, v in upstream.raw_headers
                        if k.lower() not in drop
                    ]
                    if upstream.headers.get("Location"):
                        base = self.runtime.upstreams.base_urls[service]
                        response_headers = [
                            (k, relative_location(v, base) if k == b"location" else v)
                            for k, v in response_headers
                        ]
                break
            except aiohttp.ServerDisconnectedError:
                # A pooled keep-alive connection the upstream had already closed: retry once
                # when the method is idempotent.
                if attempt + 1 < attempts:
                    continue
                await self._upstream_error(send, service, 502, "upstream_unavailable",
                                           "closed the connection")
                return
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError):
                await self._upstream_error(send, service, 503, "upstream_unavailable",
                                           "is not accepting connections")
                return
            except TimeoutError:
                await self._upstream_error(send, service, 504, "upstream_timeout",
                                           "did not answer in time")
                return
            except aiohttp.ClientError as exc:
                logger.warning("upstream error", extra={"service": service, "error": repr(exc)})
                await self._upstream_error(send, service, 502, "upstream_unavailable",
                                           "answered with a broken response")
                return
        if method != "HEAD":
            response_headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": payload})

    async def _upstream_error(self, send: Send, service: str, status: int, code: str,
                              what: str) -> None:
        logger.warning("upstream failure", extra={"service": service, "status": status})
        await send_problem(send, status, code, f"The {service} service {what}.",
                           [(b"retry-after", b"1")] if status == 503 else [])


async def refresh_periodically(jwks: JwksCache, interval: float) -> None:
    """An unknown kid brings a new key in at once; only a refetch now and then notices a key
    that was withdrawn (say, after a leak) without a new one being used yet."""
    while True:
        await asyncio.sleep(interval)
        await jwks.fetch()


class GatewayRuntime:
    """What the lifespan opens and closes: upstream pools, Redis, the JWKS cache and verifier."""

    def __init__(self, settings: Settings, table: RouteTable | None = None) -> None:
        self.settings = settings
        self.table = table or RouteTable()
        self.upstreams = Upstreams(settings)
        self._verifier: TokenVerifier | None = None
        self._redis: Redis | None = None
        self._jwks_refresher: asyncio.Task[None] | None = None

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            raise RuntimeError("gateway runtime used outside its lifespan")
        return self._redis

    @property
    def verifier(self) -> TokenVerifier:
        if self._verifier is None:
            raise RuntimeError("gateway runtime used outside its lifespan")
        return self._verifier

    async def start(self) -> None:
        settings = self.settings
        await self.upstreams.start()
        self._redis = Redis.from_url(settings.redis_url, decode_responses=True,
                                     socket_connect_timeout=1, socket_timeout=2,
                                     max_connections=512)
        jwks = JwksCache(f"{settings.user_service_url}/.well-known/jwks.json",
                         self.upstreams.sessions["user"],
                         refetch_interval=settings.jwks_refetch_interval_seconds)
        await jwks.fetch()
        self._verifier = TokenVerifier(jwks, self._redis, issuer=settings.jwt_issuer,
                                       audience=settings.jwt_audience,
                                       leeway=settings.jwt_leeway_seconds)
        self._jwks_refresher = asyncio.create_task(
            refresh_periodically(jwks, settings.jwks_max_age_seconds))

    async def close(self) -> None:
        if self._jwks_refresher is not None:
            self._jwks_refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._jwks_refresher
        await self.upstreams.close()
        if self._redis is not None:
            await self._redis.aclose()
