"""Shared streams (gateway/fanout.py): one upstream stream per URL, written to every client.

The upstream here is a real HTTP server whose stream the test drives (`Hub`): it sends the
current state first, as stock_service does, then whatever the test publishes. The gateway is
the real one, on loopback, with that server as stock_service.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route as StarletteRoute
from starlette.types import Message

from gateway.app import create_app
from gateway.fanout import SharedStreams, start_eagerly
from gateway.headers import RESPONSE_DROP
from gateway.routes import Route
from gateway.tests.conftest import Rig, gateway_settings
from shared.testing.net import ThreadedServer, free_port

LIVE = "/api/v1/products/7/live"


def event(n: int) -> bytes:
    return f'id: {n}\ndata: {{"n":{n}}}\n\n'.encode()


class Hub:
    """An upstream event stream the test drives: the current state at once, then each event
    published, to every connection; `end()` sends a final event and ends them all."""

    def __init__(self) -> None:
        self.state = event(1)
        self.status = 200
        self.opened = 0
        self.open_now = 0
        self.requests: list[dict[str, str]] = []
        self._queues: list[asyncio.Queue[bytes | None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def app(self) -> Starlette:
        async def stream(request: Request) -> Response:
            self.requests.append(dict(request.headers))
            if self.status != 200:
                return JSONResponse({"code": "not_found"}, status_code=self.status)
            self._loop = asyncio.get_running_loop()
            queue: asyncio.Queue[bytes | None] = asyncio.Queue()
            with self._lock:
                self._queues.append(queue)
                first = self.state
            self.opened += 1
            self.open_now += 1

            async def events() -> AsyncIterator[bytes]:
                try:
                    yield first
                    while (item := await queue.get()) is not None:
                        yield item
                finally:
                    self.open_now -= 1
                    with self._lock:
                        self._queues.remove(queue)

            return StreamingResponse(events(), media_type="text/event-stream",
                                     headers={"Set-Cookie": "upstream=1"})

        return Starlette(routes=[StarletteRoute("/{path:path}", stream)])

    def _put(self, item: bytes | None) -> None:
        assert self._loop is not None
        with self._lock:
            queues = list(self._queues)
        for queue in queues:
            self._loop.call_soon_threadsafe(queue.put_nowait, item)

    def publish(self, data: bytes) -> None:
        if not data.startswith(b":"):
            self.state = data
        self._put(data)

    def end(self, final: bytes) -> None:
        self.publish(final)
        self._put(None)


class Listener:
    """One client of the stream through the gateway, collecting the `data:` lines it hears."""

    def __init__(self, http: httpx.AsyncClient, path: str = LIVE,
                 headers: dict[str, str] | None = None) -> None:
        self.http = http
        self.path = path
        self.request_headers = headers or {}
        self.data: list[str] = []
        self.comments = 0
        self.ended = False
        self.status = 0
        self.headers: httpx.Headers = httpx.Headers()
        self._heard = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Listener:
        opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._read(opened))
        await asyncio.wait_for(opened, 5)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _read(self, opened: asyncio.Future[None]) -> None:
        async with self.http.stream("GET", self.path, headers=self.request_headers) as response:
            self.status, self.headers = response.status_code, response.headers
            opened.set_result(None)
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    self.data.append(line.removeprefix("data: "))
                elif line.startswith(":"):
                    self.comments += 1
                self._heard.set()
        self.ended = True
        self._heard.set()

    async def until(self, predicate: Any, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self):
                self._heard.clear()
                await self._heard.wait()

    async def heard(self, count: int, timeout: float = 5.0) -> None:
        await self.until(lambda me: len(me.data) >= count, timeout)


@pytest.fixture
def hub() -> Iterator[tuple[Hub, ThreadedServer]]:
    the_hub = Hub()
    server = ThreadedServer(the_hub.app()).start()
    yield the_hub, server
    server.stop()


@pytest.fixture
async def gateway(hub: tuple[Hub, ThreadedServer], rig: Rig,
                  redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    upstreams = {name: server.url for name, server in rig.upstreams.items()}
    settings = gateway_settings({**upstreams, "stock": hub[1].url}, redis_url,
                                stream_idle_timeout_seconds=3.0)
    server = ThreadedServer(create_app(settings)).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            yield http
    finally:
        server.stop()


async def eventually(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.02)


def test_only_a_public_get_stream_can_be_shared() -> None:
    with pytest.raises(ValueError, match="only a public GET stream"):
        Route("/api/v1/orders/tickets/{id}/events", "order", stream=True, shared=True)
    with pytest.raises(ValueError, match="only a public GET stream"):
        Route("/api/v1/products/{id}/stock", "stock", frozenset({"GET"}), shared=True)


async def test_many_clients_share_one_upstream_stream(
        gateway: httpx.AsyncClient, hub: tuple[Hub, ThreadedServer]) -> None:
    upstream, _ = hub
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Listener(gateway)) for _ in range(20)]
        for client in clients:
            await client.heard(1)
        # One upstream stream at a time (opened again only when a newcomer came more than
        # REPLAY_MAX_AGE_SECONDS after the last event).
        await eventually(lambda: upstream.open_now == 1)
        for n in (2, 3):
            upstream.publish(event(n))
        for client in clients:
            await client.heard(3)
            assert client.status == 200
            assert client.data == ['{"n":1}', '{"n":2}', '{"n":3}']
        # A different URL is a different stream.
        async with Listener(gateway, "/api/v1/products/8/live") as other:
            await other.heard(1)
            await eventually(lambda: upstream.open_now == 2)


async def test_a_client_that_joins_late_gets_the_current_state_at_once(
        gateway: httpx.AsyncClient, hub: tuple[Hub, ThreadedServer]) -> None:
    upstream, _ = hub
    async with Listener(gateway) as first:
        await first.heard(1)
        for n in (2, 3, 4):
            upstream.publish(event(n))
        await first.heard(4)
        # Nothing is published meanwhile: only the kept state can reach them.
        async with Listener(gateway) as late, \
                Listener(gateway, headers={"Last-Event-ID": "2"}) as reconnected:
            await late.heard(1)
            await reconnected.heard(1)
            assert late.data == reconnected.data == ['{"n":4}']
            upstream.publish(event(5))
            await late.heard(2)
            await reconnected.heard(2)
            await first.heard(5)  # each client's copy arrives in its own time
            assert late.data[-1] == reconnected.data[-1] == first.data[-1] == '{"n":5}'


async def test_comment_lines_reach_every_client(
        gateway: httpx.AsyncClient, hub: tuple[Hub, ThreadedServer]) -> None:
    upstream, _ = hub
    async with Listener(gateway) as one, Listener(gateway) as two:
        await one.heard(1)
        await two.heard(1)
        upstream.publish(b": keep-alive\n\n")
        await one.until(lambda me: me.comments == 1)
        await two.until(lambda me: me.comments == 1)
        # A newcomer is given the last event, never a comment line.
        async with Listener(gateway) as three:
            await three.heard(1)
            assert three.data == ['{"n":1}']


async def test_the_upstream_ending_ends_every_client_with_the_final_event(
        gateway: httpx.AsyncClient, hub: tuple[Hub, ThreadedServer]) -> None:
    upstream, _ = hub
    async with Listener(gateway) as one, Listener(gateway) as two:
        await one.heard(1)
        await two.heard(1)
        upstream.end(b'event: deleted\nid: 9\ndata: {"deleted":true}\n\n')
        for client in (one, two):
            await client.until(lambda me: me.ended)
            assert client.data[-1] == '{"deleted":true}'
    # Nothing is kept of an ended stream: the next client opens a new one.
    upstream.state = event(10)
    async with Listener(gateway) as after:
        await after.heard(1)
        assert after.data == ['{"n":10}']
    assert upstream.opened == 2


async def test_the_last_client_leaving_closes_the_upstream_stream(
        gateway: httpx.AsyncClient, hub: tuple[Hub, ThreadedServer]) -> None:
    upstream, _ = hub
    async with Listener(gateway) as one:
        await one.heard(1)
        async with Listener(gateway) as two:
            await two.heard(1)
        await asyncio.sleep(0.2)
        assert upstream.open_now == 1, "a client leaving closed the stream of the others"
        upstream.publish(event(2))
        await one.heard(2)
    await eventually(lambda: upstream.open_now == 0)


async def test_an_upstream_restart_is_bridged_for_the_clients(
        gateway: httpx.AsyncClient, hub: tuple[Hub, ThreadedServer]) -> None:
    upstream, server = hub
    async with Listener(gateway) as one, Listener(gateway) as two:
        await one.heard(1)
        await two.heard(1)
        upstream.state = event(2)  # what the upstream will say first when it is back
        server.stop()
        hub_again = ThreadedServer(upstream.app(), port=server.port).start()
        try:
            for client in (one, two):
                await client.heard(2, timeout=10)
                assert client.data[-1] == '{"n":2}'
                assert not client.ended
            upstream.publish(event(3))
            await one.heard(3)
            await two.heard(3)
        finally:
            hub_again.stop()
    assert upstream.opened >= 2


async def test_a_refusal_is_passed_on_and_not_kept(
        gateway: httpx.AsyncClient, hub: tuple[Hub, ThreadedServer]) -> None:
    upstream, _ = hub
    upstream.status = 404
    refused = await gateway.get(LIVE)
    assert refused.status_code == 404
    assert refused.json() == {"code": "not_found"}
    upstream.status = 200
    async with Listener(gateway) as client:
        await client.heard(1)
    assert len(upstream.requests) == 2


async def test_an_upstream_that_is_down_is_a_quick_503(rig: Rig, redis_url: str) -> None:
    upstreams = {name: server.url for name, server in rig.upstreams.items()}
    settings = gateway_settings({**upstreams, "stock": f"http://127.0.0.1:{free_port()}"},
                                redis_url)
    server = ThreadedServer(create_app(settings)).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
            started = time.monotonic()
            answer = await http.get(LIVE)
            assert answer.status_code == 503
            assert answer.headers["retry-after"]
            assert answer.json()["code"] == "upstream_unavailable"
            assert time.monotonic() - started < 2
    finally:
        server.stop()


async def test_no_client_header_or_identity_reaches_a_shared_stream(
        gateway: httpx.AsyncClient, hub: tuple[Hub, ThreadedServer], rig: Rig) -> None:
    upstream, _ = hub
    headers = {"Authorization": f"Bearer {rig.token(sub='77')}", "Cookie": "session=secret",
               "X-User-Id": "5", "Accept-Language": "ko", "X-Request-Id": "client-request-1"}
    async with Listener(gateway, headers=headers) as client:
        await client.heard(1)
        assert "set-cookie" not in client.headers, "one client's cookie, handed to all"
        assert client.headers["x-request-id"] == "client-request-1"
    (sent,) = upstream.requests
    assert "authorization" not in sent
    assert "cookie" not in sent
    assert "accept-language" not in sent
    assert sent.get("x-user-id", "") == ""
    assert sent["x-forwarded-for"] == ""


async def test_a_slow_client_is_dropped_and_never_holds_up_the_others(
        gateway: httpx.AsyncClient, hub: tuple[Hub, ThreadedServer]) -> None:
    """A client that stops reading: the gateway's writes to it wait once its buffers are full;
    the others hear every event meanwhile, and it is cut off past the stall timeout (3 s)."""
    upstream, _ = hub
    port = int(str(gateway.base_url).rsplit(":", 1)[1].rstrip("/"))
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", port))
    slow.sendall(f"GET {LIVE} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    try:
        async with Listener(gateway) as fast:
            await fast.heard(1)
            big = "x" * 65_536
            for n in range(2, 102):  # 6.5 MB: far past what the slow client's buffers take
                upstream.publish(f'id: {n}\ndata: {{"n":{n},"pad":"{big}"}}\n\n'.encode())
                if n % 10 == 0:
                    await fast.heard(n, timeout=10)
            await fast.heard(101, timeout=10)
            # Cut off: reading now finds the end of the connection.
            await asyncio.sleep(3.5)
            slow.settimeout(10)
            received = 0
            while chunk := slow.recv(1 << 20):
                received += len(chunk)
            assert received < 100 * 65_536, "the slow client was written everything"
            upstream.publish(event(200))
            await fast.heard(102)
    finally:
        slow.close()


# The fan-out on its own, with ASGI callables standing in for the clients.

async def test_a_waiting_write_is_owed_only_the_newest_event(
        hub: tuple[Hub, ThreadedServer]) -> None:
    upstream, server = hub
    streams = SharedStreams(drop_headers=RESPONSE_DROP, max_response_bytes=1 << 20,
                            stall_seconds=1.0)
    fast_bodies: list[bytes] = []  # several events may come in one write
    stuck = asyncio.Event()

    async def fast_send(message: Message) -> None:
        fast_bodies.append(message.get("body", b""))

    async def slow_send(message: Message) -> None:
        if message["type"] == "http.response.body" and message["body"] != event(1):
            await stuck.wait()  # never set: this client's socket never drains

    async def connected() -> Message:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def unavailable(send: Any, error: BaseException | None) -> None:
        raise AssertionError(f"the upstream is up: {error!r}")

    async with aiohttp.ClientSession() as session:
        def opener() -> Any:
            return session.get(server.url + LIVE)

        key = server.url + LIVE
        fast = asyncio.create_task(streams.serve(key, opener, unavailable, connected, fast_send))
        slow = asyncio.create_task(streams.serve(key, opener, unavailable, connected, slow_send))
        await eventually(lambda: event(1) in b"".join(fast_bodies))
        for n in range(2, 52):
            upstream.publish(event(n))
        await eventually(lambda: event(51) in b"".join(fast_bodies))
        (client,) = [c for c in streams.streams[key].clients if c.send is slow_send]
        assert client.writing is not None
        assert client.pending == event(51), "owed more than the newest event"
        await asyncio.wait_for(slow, 3)  # dropped past the stall timeout
        assert not fast.done()
        upstream.publish(event(52))
        await eventually(lambda: event(52) in b"".join(fast_bodies))
        fast.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await fast
    assert streams.streams == {}
    await eventually(lambda: upstream.open_now == 0)


async def test_start_eagerly_runs_to_the_end_without_a_task_when_nothing_waits() -> None:
    done: list[str] = []

    async def quick() -> None:
        done.append("quick")

    assert start_eagerly(quick(), timeout=1) is None
    assert done == ["quick"]

    gate = asyncio.get_running_loop().create_future()

    async def waits() -> None:
        done.append(await gate)

    finishing = start_eagerly(waits(), timeout=1)
    assert finishing is not None
    gate.set_result("later")
    await finishing
    assert done == ["quick", "later"]

    never = asyncio.get_running_loop().create_future()

    async def stalls() -> None:
        await never

    stalled = start_eagerly(stalls(), timeout=0.1)
    assert stalled is not None
    with pytest.raises(TimeoutError):
        await stalled


async def test_a_head_request_is_answered_alone(
        gateway: httpx.AsyncClient, hub: tuple[Hub, ThreadedServer]) -> None:
    upstream, _ = hub
    async with Listener(gateway) as client:
        await client.heard(1)
        head = await gateway.head(LIVE)
        assert head.status_code == 200
        assert head.headers["content-type"].startswith("text/event-stream")
        assert head.content == b""
    assert len(upstream.requests) == 2, "a HEAD joined the shared stream"


async def test_a_newcomer_after_a_quiet_spell_gets_a_first_event_rendered_now(
        gateway: httpx.AsyncClient, hub: tuple[Hub, ThreadedServer]) -> None:
    """An event can carry the server's clock (/live's server_time): replayed long after it
    came, it would start a newcomer's countdown late. Past REPLAY_MAX_AGE_SECONDS the upstream
    stream is opened again for the newcomer; the others see the repeat only if its id is new."""
    upstream, _ = hub
    async with Listener(gateway) as first:
        await first.heard(1)
        await asyncio.sleep(0.8)  # past the 0.5 s a kept event is replayed for
        upstream.state = b'id: 1\ndata: {"n":1,"rendered":"now"}\n\n'  # same state, new clock
        async with Listener(gateway) as late:
            await late.heard(1)
            assert late.data == ['{"n":1,"rendered":"now"}']
            upstream.publish(event(2))
            await late.heard(2)
            await first.heard(2)
            assert first.data == ['{"n":1}', '{"n":2}'], "the others were sent the repeat"
    assert upstream.opened == 2


async def test_a_newcomer_is_given_the_refusal_met_when_opening_again(
        gateway: httpx.AsyncClient, hub: tuple[Hub, ThreadedServer]) -> None:
    """Opened again for a newcomer, the upstream answers 404 (the product was deleted): the
    newcomer gets that answer, never a 500, and the other client's stream ends."""
    upstream, _ = hub
    async with Listener(gateway) as first:
        await first.heard(1)
        await asyncio.sleep(0.8)
        upstream.status = 404
        refused = await gateway.get(LIVE)
        assert refused.status_code == 404
        assert refused.json() == {"code": "not_found"}
        await first.until(lambda me: me.ended)
