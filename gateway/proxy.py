"""Forwarding: match the route, check the token, strip identity headers, pass the request on.

Written as raw ASGI with one pooled aiohttp session per upstream: this is the hot path of
every request, and aiohttp's pool holds up under concurrency where httpx's collapses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from typing import Any
from urllib.parse import parse_qs

import aiohttp
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from yarl import URL

from gateway.auth import Identity, KeysUnavailable, TokenRejected
from gateway.body import BodyTooLarge, ClientDisconnected, discard_rest, read_body, read_bounded
from gateway.headers import (
    HEAD_RESPONSE_DROP,
    HOP_BY_HOP,
    RESPONSE_DROP,
    TrustedProxies,
    client_address,
    connection_options,
    is_identity_header,
    relative_location,
)
from gateway.problems import send_answer, send_problem
from gateway.revocation import RevocationStateMissing
from gateway.runtime import GatewayRuntime
from gateway.streams import StreamRelay
from shared.contracts import (
    ARRIVED_AT_HEADER,
    CLIENT_IP_HEADER,
    EDGE_FINAL_FINAL,
    EDGE_FINAL_HEADER,
    EDGE_FINAL_PENDING,
    GATEWAY_CALLER,
    IDENTITY_CALLER_HEADER,
    IDENTITY_SIGNATURE_HEADER,
    NOT_READ_HEADER,
    REQUEST_ID_HEADER,
    SESSION_ID_HEADER,
    USER_ID_HEADER,
    USER_ROLES_HEADER,
    request_target,
)
from shared.edge_answers import Answer
from shared.edge_finals import STREAM_SUFFIX, Place, QueuePosition
from shared.in_order import last_look
from shared.request_context import current_request_id
from shared.sale_metrics import GatewayMetrics
from shared.services import service as app_named
from shared.signed_on_send import SignatureHeaders, signed_request
from shared.sse import HEADERS as SSE_HEADERS
from shared.sse import HEARTBEAT as SSE_HEARTBEAT

logger = logging.getLogger("gateway.proxy")

# Retried once when a pooled connection turns out closed or is reset, which may happen after
# the upstream read the request: only methods whose repetition has no effect at all (and a POST
# its route answers once by its Idempotency-Key: Route.keyed). PUT and DELETE are idempotent in
# state, not in effect: a repeated password change answers 403 and counts as a failed login, a
# repeated delete answers 404, though the first had succeeded.
_RETRYABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# A stream held at the edge (shared/edge_finals.py) reads its resource again this often (a
# position that moved, a final state whose message was missed), and sends a comment line when
# nothing was sent for HEARTBEAT_SECONDS, as a service's own stream does (shared/sse.py).
HELD_REFRESH_SECONDS = 10.0
# Held streams' reads again together cost their service about this many reads a second per
# gateway process (held_refresh_after): seen at 20,000 buyers, a read every 10 s per stream was
# 2,000 reads a second, through the pool the orders wait for (with 128 connections, 14,791
# buyers were left without a final answer; none once the reads were spread). They go through
# the long polls' pool now (_read_resource).
HELD_READS_PER_SECOND = 100.0
HEARTBEAT_SECONDS = 15.0
# A held stream whose pending state named its place in a queue is sent its position as the
# queue moves (shared/edge_finals.py): no more often than this, as order_service's own streams,
# and no more than about this many such events a second per gateway process in all. At 20,000
# buyers (some 1,900 streams held per gateway) 1,000 a second took a tenth of a CPU per gateway
# from a machine the opening already fills.
POSITION_EVERY_SECONDS = 0.5
POSITION_EVENTS_PER_SECOND = 250.0
# Such a stream still reads its resource again (a final whose message was missed, a position
# the count cannot see), but rarely: a read is a request at its service.
FOLLOWING_REFRESH_SECONDS = 30.0
FOLLOWING_READS_PER_SECOND = 25.0
HELD_ROUTE = "/api/v1/orders/tickets/{ticket}/events"
_EDGE_FINAL = EDGE_FINAL_HEADER.lower().encode()
_PENDING = EDGE_FINAL_PENDING.encode()
_FINAL = EDGE_FINAL_FINAL.encode()
# Held streams read the service's own answer, the header that says so kept.
_READ_DROP = RESPONSE_DROP - {_EDGE_FINAL}


class _AnsweredAtEdge(Exception):
    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.code)
        self.answer = answer


def _edge_final_mark(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    return next((value for name, value in headers if name.lower() == _EDGE_FINAL), None)


def held_refresh_after(held_streams: int, *, following: bool = False) -> float:
    """Seconds until a held stream reads its resource again, when `held_streams` are held
    here: HELD_REFRESH_SECONDS, longer when that many would read more than
    HELD_READS_PER_SECOND, and a quarter earlier or later at random, so that streams opened
    together do not read together. `following` its queue, whose moves come without a read:
    FOLLOWING_REFRESH_SECONDS and FOLLOWING_READS_PER_SECOND instead."""
    least, reads_per_second = (FOLLOWING_REFRESH_SECONDS, FOLLOWING_READS_PER_SECOND) \
        if following else (HELD_REFRESH_SECONDS, HELD_READS_PER_SECOND)
    return max(least, held_streams / reads_per_second) * \
        random.uniform(0.75, 1.25)  # noqa: S311 (a spread in time, not a secret)


def held_position_every(held_streams: int) -> float:
    """Seconds between a held stream's positions sent as its queue moves: POSITION_EVERY_SECONDS,
    longer when `held_streams` would send more than POSITION_EVENTS_PER_SECOND, and a quarter
    earlier or later at random: one count wakes every stream of its queue, and streams sent
    their positions together would otherwise stay in step, a burst of sends each time."""
    return max(POSITION_EVERY_SECONDS, held_streams / POSITION_EVENTS_PER_SECOND) * \
        random.uniform(0.75, 1.25)  # noqa: S311 (a spread in time, not a secret)


def held_read_soon(held_streams: int) -> float:
    """Seconds until a held stream that may have missed its final reads its resource: soon,
    at a moment of its own within the reads' budget, not every held stream at once."""
    return random.uniform(0.0, max(1.0, _reads_take(held_streams)))  # noqa: S311 (as above)


def _reads_take(held_streams: int) -> float:
    """Seconds `held_streams` reads take at HELD_READS_PER_SECOND."""
    return held_streams / HELD_READS_PER_SECOND


def sse_data(payload: bytes) -> bytes:
    """A JSON body (compact: one line) as one server-sent event."""
    return b"data: " + payload + b"\n\n"


async def _one_event(send: Send, payload: bytes) -> None:
    """A whole event stream of one event: a resource's final state."""
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
    await send({"type": "http.response.body", "body": sse_data(payload)})


async def _until_disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def held_for(scope: Scope, longest: float) -> float:
    """Seconds the request's `?wait=` asks the service to hold it, at most `longest` (0 on a
    route with no long poll, or without a number to wait)."""
    if not longest or not scope.get("query_string"):
        return 0.0
    asked = parse_qs(scope["query_string"].decode("latin-1")).get("wait")
    try:
        seconds = float(asked[-1]) if asked else 0.0
    except ValueError:
        return 0.0
    return min(max(seconds, 0.0), longest) if math.isfinite(seconds) else 0.0


class Proxy:
    """ASGI middleware: paths in the route table are forwarded; anything else goes on to `app`."""

    def __init__(self, app: ASGIApp, *, runtime: GatewayRuntime,
                 metrics: GatewayMetrics | None = None) -> None:
        self.app = app
        self.metrics = metrics or GatewayMetrics()
        self.metrics.open_streams = lambda: self.open_streams
        self.runtime = runtime
        self.settings = runtime.settings
        self.table = runtime.table
        # Read once; without it the gateway refuses to start (no service would believe it).
        self.signer = runtime.settings.identity_signer(GATEWAY_CALLER)
        # Each request is signed for the service it goes to: its package is the audience.
        self.audiences = {name: app_named(name).package
                          for name in runtime.upstreams.base_urls}
        self.open_streams = 0
        self.held_streams = 0  # of those, held here (_hold_stream)
        self.stream_relay = StreamRelay(max_response_bytes=self.settings.max_response_bytes)
        self.proxies = TrustedProxies(runtime.settings.trusted_proxy_networks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The raw path, as forwarded: what is matched is exactly what the upstream receives.
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        match = self.table.match(scope["method"], raw_path)
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
            await self.forward(scope, receive, tracking_send, match.route.service, match.public,
                               raw_path, stream=match.route.stream, shared=match.route.shared,
                               keyed=raw_path in match.route.keyed,
                               held_seconds=held_for(scope, match.route.long_poll_seconds),
                               held_at_edge=match.route.held_at_edge)
        except Exception:
            # The proxy runs in front of FastAPI's error handling, so it answers for itself:
            # a problem+json 500 with the request id, never a bare traceback page.
            logger.exception("proxy failure")
            if started:
                raise
            await send_problem(send, 500, "internal_error", "The gateway could not complete the request.")

    async def forward(self, scope: Scope, receive: Receive, send: Send, service: str,
                      public: bool, raw_path: str, *, stream: bool = False,
                      shared: bool = False, keyed: bool = False,
                      held_seconds: float = 0.0, held_at_edge: bool = False) -> None:
        # Stamped first, before the token check and the body: places in an opening's line are
        # given in this order (shared/contracts.py ARRIVED_AT_HEADER).
        arrived_at = str(time.time_ns() // 1000)
        settings = self.settings
        authorization: str | None = None
        content_length: int | None = None
        expects_continue = False
        has_key = False  # an Idempotency-Key: with `keyed`, the request may be sent again
        headers: list[tuple[str, str]] = []
        # Headers the client's Connection header names are for this hop only (RFC 9110 7.6.1):
        # never forwarded, whatever they are called.
        hop_only = connection_options(scope["headers"])
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.lower()
            if name == b"authorization":
                # Read here and never forwarded: no service reads a token (they believe the
                # signed identity), so none gets one it could replay against the gateway.
                authorization = raw_value.decode("latin-1")
                continue
            elif name == b"expect":
                expects_continue = raw_value.lower() == b"100-continue"
            elif name == b"idempotency-key":
                has_key = True
            elif name == b"content-length":
                try:
                    content_length = int(raw_value)
                except ValueError:
                    content_length = settings.max_body_bytes + 1
            if name in HOP_BY_HOP or is_identity_header(name) or name in hop_only:
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
            except (RedisError, RevocationStateMissing, KeysUnavailable) as exc:
                # Fail closed: without the revocation list (Redis down, or its data lost) a
                # logged-out token could pass, and without keys no token can be checked at all.
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

        # An answer a service published for this route and the request's key (sold out), given
        # here without forwarding; from memory, no Redis round trip (shared/edge_answers.py).
        route = f"{scope['method']} {scope['path']}"
        answer = self.runtime.edge_answers.answer_for(route, scope["headers"], body)
        if answer is not None:
            self.metrics.edge_answer(scope["gateway.route"])
            await send_answer(send, answer)
            return

        # A resource in a final state its service published for its owner (an answered
        # ticket), read by that owner: given here from memory (shared/edge_finals.py).
        if identity is not None and scope["method"] == "GET" and not scope.get("query_string") \
                and await self._answer_final(send, str(identity.user_id), raw_path=raw_path):
            self.metrics.edge_answer(scope["gateway.route"])
            return

        request_id = current_request_id() or ""
        client_ip = client_address(scope, self.proxies)
        limits = self.runtime.rate_limits
        if identity is not None and limits.applies_to(route):
            retry_after = await limits.retry_after(route, user_id=str(identity.user_id),
                                                   client_ip=client_ip)
            if retry_after is not None:
                self.metrics.limited(scope["gateway.route"])
                await send_problem(send, 429, "rate_limited",
                                   "Too many requests; try again later.",
                                   [(b"retry-after", str(int(retry_after)).encode())])
                return
        # The raw path and query as forwarded (and signed).
        target = request_target(scope.get("raw_path") or scope["path"].encode(),
                                scope.get("query_string", b""))
        url = URL(self.runtime.upstreams.base_urls[service] + target, encoded=True)
        if shared and public and scope["method"] == "GET":
            await self._share_stream(receive, send, service, url, target, request_id)
            return
        user_id = session_id = roles = ""
        if stream:
            body = b""  # a stream's request is sent without one
        headers.append((REQUEST_ID_HEADER, request_id))
        headers.append((CLIENT_IP_HEADER, client_ip))
        if identity is not None:
            user_id, session_id, roles = str(identity.user_id), identity.session_id, identity.roles
            headers.append((USER_ID_HEADER, user_id))
            headers.append((SESSION_ID_HEADER, session_id))
            if roles:
                headers.append((USER_ROLES_HEADER, roles))
        headers.append((ARRIVED_AT_HEADER, arrived_at))
        # Sent to one replica's address (Upstreams.urls), asked for by the service's name.
        headers.append(("Host", url.raw_authority))
        headers.append((IDENTITY_CALLER_HEADER, GATEWAY_CALLER))
        # Signed for this request only (method, path and query as forwarded, body, the service
        # it goes to, a fresh nonce): services believe these headers only with it. Signed once
        # a connection is in hand (shared/signed_on_send.py), so no wait for one ages it; each
        # attempt anew: the nonce of the first may have been spent.
        audience, method = self.audiences[service], scope["method"]

        def signed_for(target: str) -> SignatureHeaders:
            def signature() -> list[tuple[str, str]]:
                return [(IDENTITY_SIGNATURE_HEADER, self.signer.sign(
                    audience=audience, method=method, target=target, body=body,
                    user_id=user_id, session_id=session_id, request_id=request_id,
                    client_ip=client_ip, roles=roles, arrived_at=arrived_at))]

            return signature

        signature = signed_for(target)
        if stream:
            if held_at_edge and settings.edge_held_streams and identity is not None \
                    and method == "GET" and not scope.get("query_string"):
                # The resource itself (the path without /events), read as its owner.
                resource = target[:-len(STREAM_SUFFIX)]
                resource_url = URL(self.runtime.upstreams.base_urls[service] + resource,
                                   encoded=True)
                path = raw_path[:-len(STREAM_SUFFIX)]
                pending = self.runtime.pending_for(path, user_id)
                place = None if pending is None else \
                    self.runtime.edge_finals.place_for(path, user_id)
                if await self._hold_stream(receive, send, service, resource_url, headers,
                                           signed_for(resource), user_id=user_id, path=path,
                                           pending=pending, place=place):
                    return
            await self._relay_stream(receive, send, service, method, url, headers, signature)
            return
        # Sent again if its connection breaks before an answer: an idempotent method, or a
        # POST the service answers once by its Idempotency-Key (the same stamp goes with it).
        resendable = method in _RETRYABLE_METHODS or (keyed and method == "POST" and has_key)
        if not body:
            # An edge answer is keyed by a field of the request's JSON body: none applies.
            await self._relay(send, service, method, url, headers, signature, body,
                              resendable=resendable, held_seconds=held_seconds)
            return
        edge_answers = self.runtime.edge_answers

        def answered_meanwhile() -> None:
            # Looked at again once a connection is in hand (shared/in_order.py): at an opening
            # the crowd waits for one, and whoever still waits when the product sells out is
            # answered here instead of at order_service.
            answer = edge_answers.answer_for(route, scope["headers"], body)
            if answer is not None:
                raise _AnsweredAtEdge(answer)

        try:
            with last_look(answered_meanwhile):
                await self._relay(send, service, method, url, headers, signature, body,
                                  resendable=resendable, held_seconds=held_seconds)
        except _AnsweredAtEdge as edge:
            self.metrics.edge_answer(scope["gateway.route"])
            await send_answer(send, edge.answer)

    async def _answer_final(self, send: Send, user_id: str, *, raw_path: str) -> bool:
        """GET <path> as its JSON, GET <path>/events as one event ending the stream, when the
        path's final state is held for this user; False (forward) otherwise."""
        finals = self.runtime.edge_finals
        if raw_path.endswith(STREAM_SUFFIX):
            body = finals.final_for(raw_path[:-len(STREAM_SUFFIX)], user_id)
            if body is None:
                return False
            await _one_event(send, body)
            return True
        body = finals.final_for(raw_path, user_id)
        if body is None:
            return False
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        return True

    async def _read_resource(self, service: str, url: URL, headers: list[tuple[str, str]],
                             signature: SignatureHeaders) -> tuple[int, list[tuple[bytes, bytes]],
                                                                   bytes]:
        """GET `url` as the request's own caller, with _relay's failover and resends: the
        status, headers and body it would have relayed (a 5xx of the gateway's own when the
        service could not be asked)."""
        answered: dict[str, Any] = {}

        async def keep(message: Message) -> None:
            answered.setdefault(message["type"], message)

        # On the long polls' pool: held streams read again now and then, and none of those
        # reads waits among the orders for the ordinary pool's few connections.
        await self._relay(keep, service, "GET", url, headers, signature, b"", resendable=True,
                          drop=_READ_DROP, held_pool=True)
        start, body = answered["http.response.start"], answered.get("http.response.body", {})
        return start["status"], list(start.get("headers", [])), body.get("body", b"")

    async def _hold_stream(self, receive: Receive, send: Send, service: str, url: URL,
                           headers: list[tuple[str, str]], signature: SignatureHeaders, *,
                           user_id: str, path: str, pending: bytes | None = None,
                           place: Place | None = None) -> bool:
        """`<path>/events` held here (shared/edge_finals.py), if the service's answer to
        `GET <path>` says its final state will be published: that answer as the first event,
        the final state as the last, `<path>` read again now and then meanwhile
        (held_refresh_after).
        False, having sent nothing: the service said no such thing, relay the stream.
        `pending`: the path's pending state the service published for this user, the first
        event without a read; `place`: where it stands in its queue, its position then sent as
        the queue moves (held_position_every)."""
        if pending is not None:
            payload = pending
        else:
            status, response_headers, payload = await self._read_resource(service, url,
                                                                          headers, signature)
            mark = _edge_final_mark(response_headers)
            if status == 200 and mark == _FINAL:
                # Answered already (its message not heard here yet): that one event.
                self.metrics.edge_answer(HELD_ROUTE)
                await _one_event(send, payload)
                return True
            if status == 200 and mark != _PENDING:
                return False
            if status != 200:
                # Not the owner's, not there, the service unreachable: its answer, as a GET's.
                kept = [(k, v) for k, v in response_headers if k.lower() not in RESPONSE_DROP]
                kept.append((b"content-length", str(len(payload)).encode()))
                await send({"type": "http.response.start", "status": status, "headers": kept})
                await send({"type": "http.response.body", "body": payload})
                return True
        if not await self._room_for_a_stream(send):
            return True
        self.open_streams += 1
        self.held_streams += 1
        finals = self.runtime.edge_finals
        try:
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            await send({"type": "http.response.body", "body": sse_data(payload),
                        "more_body": True})
            gone = asyncio.ensure_future(_until_disconnected(receive))
            try:
                last_read = last_sent = time.monotonic()
                position = QueuePosition.of(place, payload)
                following = position is not None
                refresh = held_refresh_after(self.held_streams, following=following)
                reconnections = finals.reconnections
                while True:
                    now = time.monotonic()
                    wait = min(refresh - (now - last_read), HEARTBEAT_SECONDS - (now - last_sent))
                    queue = None
                    if position is not None:
                        if now < position.due:
                            wait = min(wait, position.due - now)
                        else:
                            moved = position.moved(finals)
                            if moved is not None:
                                payload, last_sent = moved, now
                                position.due = now + held_position_every(self.held_streams)
                                await send({"type": "http.response.body",
                                            "body": sse_data(moved), "more_body": True})
                                continue
                            if position.ended(finals):
                                # At the front, or its queue begun again: the reads tell the
                                # rest, as they do for a stream that follows none.
                                position, following = None, False
                                refresh = min(refresh, now - last_read +
                                              held_refresh_after(self.held_streams))
                            else:
                                queue = position.place.queue  # woken when it moves
                    final = asyncio.ensure_future(finals.wait(path, user_id, max(wait, 0.0),
                                                              queue=queue))
                    await asyncio.wait({final, gone}, return_when=asyncio.FIRST_COMPLETED)
                    if gone.done():
                        final.cancel()
                        return True
                    body = final.result()
                    if body is not None:
                        self.metrics.edge_answer(HELD_ROUTE)
                        await send({"type": "http.response.body", "body": sse_data(body)})
                        return True
                    now = time.monotonic()
                    if finals.reconnections != reconnections:
                        # The subscription was lost and is back: this stream's final may have
                        # been missed.
                        reconnections = finals.reconnections
                        refresh = now - last_read + held_read_soon(self.held_streams)
                    if now - last_read >= refresh:
                        last_read, refresh = now, held_refresh_after(self.held_streams,
                                                                     following=following)
                        status, response_headers, read = await self._read_resource(
                            service, url, headers, signature)
                        # A 5xx is no answer (the service overloaded or away): held on, as the
                        # final state will still be published, and read again later.
                        if status == 200 and read != payload:
                            payload, last_sent = read, time.monotonic()
                            if position is not None:
                                position.read_again(read, finals)
                            await send({"type": "http.response.body", "body": sse_data(read),
                                        "more_body": True})
                        if status < 500 and (status != 200 or _edge_final_mark(
                                response_headers) != _PENDING):
                            # Final (its message missed), or no longer the service's to say.
                            await send({"type": "http.response.body", "body": b""})
                            return True
                    if time.monotonic() - last_sent >= HEARTBEAT_SECONDS:
                        last_sent = time.monotonic()
                        await send({"type": "http.response.body", "body": SSE_HEARTBEAT,
                                    "more_body": True})
            finally:
                gone.cancel()
        finally:
            self.open_streams -= 1
            self.held_streams -= 1

    async def _room_for_a_stream(self, send: Send) -> bool:
        """False, having answered 503, when GATEWAY_MAX_OPEN_STREAMS are open."""
        if self.open_streams < self.settings.max_open_streams:
            return True
        await send_problem(send, 503, "upstream_unavailable",
                           "Too many streams are open right now.", [(b"retry-after", b"5")])
        return False

    async def _refuse_body(self, receive: Receive, send: Send, *, discard: int) -> None:
        """413, after reading and dropping up to `discard` more bytes (within the body timeout)
        so the client sees the answer instead of a connection reset."""
        if discard > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.body_timeout_seconds):
                    await discard_rest(receive, budget=discard)
        await send_problem(send, 413, "payload_too_large",
                           f"The body is larger than {self.settings.max_body_bytes} bytes.",
                           [(b"connection", b"close")])

    async def _relay(self, send: Send, service: str, method: str, url: URL,
                     headers: list[tuple[str, str]], signature: SignatureHeaders, body: bytes, *,
                     resendable: bool, held_seconds: float = 0.0, held_pool: bool = False,
                     drop: frozenset[bytes] | None = None) -> None:
        upstreams = self.runtime.upstreams
        # A long poll, held by its service, in a pool of its own (Upstreams.held).
        session = (upstreams.held if held_seconds or held_pool else upstreams.sessions)[service]
        # The session's own unless held (None would mean no timeout at all).
        timeout = upstreams.held_timeout(held_seconds) if held_seconds else session.timeout
        if drop is None:
            drop = HEAD_RESPONSE_DROP if method == "HEAD" else RESPONSE_DROP
        urls = await self._urls(send, service, url)
        if urls is None:
            return
        sent_again = False  # a request that may have been read is sent at most twice
        sent_unread = False  # and one refused unread once more
        for attempt, at in enumerate(urls):
            last = attempt == len(urls) - 1
            if last:
                at = upstreams.last_try(service, urls)
            try:
                async with signed_request(
                        session, method, at, sign=signature, headers=headers,
                        data=body or None, allow_redirects=False,
                        timeout=upstreams.last_address(timeout) if last else timeout) as upstream:
                    if self._answered(service, at, upstream, urls, last=last,
                                      may_send_again=not sent_unread):
                        sent_unread = True
                        continue
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
                # A pooled keep-alive connection the upstream had already closed, or a replica
                # that died with the request: sent once more if that is safe.
                if not last and resendable and not sent_again:
                    sent_again = True
                    continue
                await self._upstream_error(send, service, 502, "upstream_unavailable",
                                           "closed the connection")
                return
            except (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError) as error:
                # Nothing was sent, so another connect is safe for any method: to the next
                # address, each in turn (with one address, once more). A timeout too puts the
                # address last for a while: a dead replica's address hangs rather than refuses
                # (make swarm-check, after a kill). Under a burst a gateway loop busy for longer
                # than the timeout may run the timer on a connect that did complete (make load);
                # with one address that changes nothing, with several only whose turn is first.
                upstreams.failed(service, at)
                if not last:
                    continue
                await self._upstream_error(send, service, 503, "upstream_unavailable",
                                           "is not accepting connections", error=error,
                                           tried=len({u.raw_host for u in urls}))
                return
            except TimeoutError:
                await self._upstream_error(send, service, 504, "upstream_timeout",
                                           "did not answer in time")
                return
            except (aiohttp.ClientOSError, aiohttp.ClientConnectionResetError) as exc:
                # The connection reset under the request (a replica killed with it: seen in
                # make swarm-check for every order the killed task held).
                logger.warning("upstream error", extra={"upstream": service, "error": repr(exc)})
                if not last and resendable and not sent_again:
                    sent_again = True
                    continue
                await self._upstream_error(send, service, 502, "upstream_unavailable",
                                           "reset the connection")
                return
            except aiohttp.ClientError as exc:
                logger.warning("upstream error", extra={"upstream": service, "error": repr(exc)})
                await self._upstream_error(send, service, 502, "upstream_unavailable",
                                           "answered with a broken response")
                return
        if method != "HEAD":
            response_headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": payload})

    async def _relay_stream(self, receive: Receive, send: Send, service: str, method: str,
                            url: URL, headers: list[tuple[str, str]],
                            signature: SignatureHeaders) -> None:
        """A streamed route: through the streams' own pool, relayed as it comes."""
        if not await self._room_for_a_stream(send):
            return
        self.open_streams += 1
        drop = HEAD_RESPONSE_DROP if method == "HEAD" else RESPONSE_DROP
        started = False

        async def oversized() -> None:
            await self._upstream_error(send, service, 502, "upstream_unavailable",
                                       "answered with an oversized response")

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            urls = await self._urls(send, service, url)
            if urls is None:
                return
            opened_again = False
            opened_unread = False
            upstreams = self.runtime.upstreams
            for attempt, at in enumerate(urls):
                last = attempt == len(urls) - 1
                if last:
                    at = upstreams.last_try(service, urls)
                try:
                    async with signed_request(
                            upstreams.streams, method, at, sign=signature, headers=headers,
                            allow_redirects=False,
                            timeout=upstreams.last_address(upstreams.stream_timeout) if last
                            else upstreams.stream_timeout) as upstream:
                        if self._answered(service, at, upstream, urls, last=last,
                                          may_send_again=not opened_unread):
                            opened_unread = True
                            continue
                        response_headers = [(k.lower(), v) for k, v in upstream.raw_headers
                                            if k.lower() not in drop]
                        await self.stream_relay.relay(upstream, response_headers, receive,
                                                      tracking_send, oversized=oversized)
                    return
                except aiohttp.ClientError as error:
                    connect_failed = isinstance(error, (aiohttp.ConnectionTimeoutError,
                                                        aiohttp.ClientConnectorError))
                    if connect_failed:
                        upstreams.failed(service, at)
                    # Nothing was relayed and a stream's method changes nothing: opening it
                    # again is safe. A connect that failed or hung (a dead replica's address,
                    # or a loop kept busy past the timeout, as in _relay) moves on to each
                    # address in turn; a stream the upstream broke (a replica killed under
                    # it) is opened once more, on the next address.
                    if started or last or (opened_again and not connect_failed):
                        raise
                    opened_again = opened_again or not connect_failed
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as error:
            if not started:
                await self._upstream_error(send, service, 503, "upstream_unavailable",
                                           "is not accepting connections", error=error,
                                           tried=len({u.raw_host for u in urls or ()}))
        except (aiohttp.ClientError, TimeoutError) as error:
            if not started:
                logger.warning("stream not opened", extra={"upstream": service,
                                                           "error": repr(error)})
                await self._upstream_error(send, service, 502, "upstream_unavailable",
                                           "answered with a broken response")
        finally:
            self.open_streams -= 1

    def _answered(self, service: str, at: URL, upstream: aiohttp.ClientResponse,
                  urls: list[URL], *, last: bool, may_send_again: bool) -> bool:
        """Notes that the address of `at` answered. True when the answer is a refusal unread
        and `may_send_again`: the service's queue held the request until its signature aged
        (shared/identity.py), so nothing ran, and it is sent once more, signed anew, whatever
        its method: on the next of `urls`, or (added) at this address again. Seen in make
        swarm-check: a surviving replica, sharing two cores with two replicas starting, read
        ticket streams 10 s after they were signed."""
        self.runtime.upstreams.answered(service, at)
        if not (may_send_again and upstream.status == 503 and NOT_READ_HEADER in upstream.headers):
            return False
        if last:
            urls.append(at)
        return True

    async def _urls(self, send: Send, service: str, url: URL) -> list[URL] | None:
        """`url` at each replica of the service, the next in turn first; None once answered
        503 (the name is not known)."""
        try:
            return await self.runtime.upstreams.urls(service, url)
        except OSError as error:
            logger.warning("upstream name not resolved", extra={"upstream": service,
                                                                "error": repr(error)})
            await self._upstream_error(send, service, 503, "upstream_unavailable",
                                       "is not accepting connections")
            return None

    async def _share_stream(self, receive: Receive, send: Send, service: str, url: URL,
                            target: str, request_id: str) -> None:
        """A shared stream (gateway/fanout.py): this client joins the one upstream stream of
        `url`, opened, if it is the first, with no client's headers and no identity (signed
        for that GET of `target`, the path and query, with a nonce of its own)."""
        if not await self._room_for_a_stream(send):
            return
        self.open_streams += 1

        def open_upstream() -> contextlib.AbstractAsyncContextManager[aiohttp.ClientResponse]:
            headers = [
                ("Accept", "text/event-stream"),
                (REQUEST_ID_HEADER, request_id),
                (CLIENT_IP_HEADER, ""),
                (IDENTITY_CALLER_HEADER, GATEWAY_CALLER),
            ]

            def signature() -> list[tuple[str, str]]:
                return [(IDENTITY_SIGNATURE_HEADER, self.signer.sign(
                    audience=self.audiences[service], method="GET", target=target, body=b"",
                    request_id=request_id))]

            return signed_request(self.runtime.upstreams.streams, "GET", url, sign=signature,
                                  headers=headers, allow_redirects=False)

        async def unavailable(send: Send, error: BaseException | None) -> None:
            if isinstance(error, aiohttp.ClientConnectorError):
                await self._upstream_error(send, service, 503, "upstream_unavailable",
                                           "is not accepting connections")
                return
            if error is not None:
                logger.warning("stream not opened", extra={"upstream": service,
                                                           "error": repr(error)})
            await self._upstream_error(send, service, 502, "upstream_unavailable",
                                       "answered with a broken response" if error is not None
                                       else "answered with an oversized response")

        try:
            await self.runtime.shared_streams.serve(str(url), open_upstream, unavailable,
                                                    receive, send)
        finally:
            self.open_streams -= 1

    async def _upstream_error(self, send: Send, service: str, status: int, code: str,
                              what: str, *, error: BaseException | None = None,
                              tried: int | None = None) -> None:
        """`error`: the last attempt's; `tried`: how many addresses were tried, when a
        connection was never made (what an operator asks first when replicas come and go)."""
        extra: dict[str, object] = {"upstream": service, "status": status}
        if error is not None:
            extra["error"] = repr(error)
        if tried is not None:
            extra["addresses_tried"] = tried
        logger.warning("upstream failure", extra=extra)
        await send_problem(send, status, code, f"The {service} service {what}.",
                           [(b"retry-after", b"1")] if status == 503 else [])
