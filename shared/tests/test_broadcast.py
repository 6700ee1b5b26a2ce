"""The one subscription per process (shared/broadcast.py) against a real Redis, through a relay
of the test's own that can go silent: a connection that stops answering (no reset, no close: a
peer gone, a network cut) is noticed by its unanswered ping and replaced, and on_connected reads
again what was missed."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from redis.asyncio import Redis

from shared import broadcast
from shared.broadcast import Subscription


class SilentRelay:
    """Relays TCP to `target`; `silence()` makes every connection open so far swallow what
    either side sends, and keep quiet, as a dead peer behind a cut network does."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.silenced: list[asyncio.Event] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    def silence(self) -> None:
        for silenced in self.silenced:
            silenced.set()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        silenced = asyncio.Event()
        self.silenced.append(silenced)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                if not silenced.is_set():
                    sink.write(data)
                    await sink.drain()

        with contextlib.suppress(OSError):
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        for side in (writer, up_writer):
            side.close()


@pytest.fixture
async def relay(redis_url: str) -> AsyncIterator[tuple[SilentRelay, str]]:
    parts = urlsplit(redis_url)
    relay = SilentRelay(parts.hostname or "127.0.0.1", parts.port or 6379)
    await relay.start()
    yield relay, urlunsplit(parts._replace(netloc=f"127.0.0.1:{relay.port}"))
    await relay.close()


async def test_a_subscription_whose_connection_went_silent_connects_again(
    relay: tuple[SilentRelay, str], redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broadcast, "PING_INTERVAL_SECONDS", 0.2)
    silent, url = relay
    channel = f"test-broadcast-{os.urandom(4).hex()}"
    heard: list[str] = []
    connections = 0
    reconnected = asyncio.Event()

    async def connected() -> None:
        nonlocal connections
        connections += 1
        if connections > 1:
            reconnected.set()

    subscription = Subscription(url, {channel: heard.append}, on_connected=connected)
    await subscription.start()
    try:
        assert connections == 1
        silent.silence()
        async with asyncio.timeout(5):
            await reconnected.wait()
            while not heard:
                await redis.publish(channel, "after the silence")
                await asyncio.sleep(0.05)
    finally:
        await subscription.close()
    assert heard[0] == "after the silence"
