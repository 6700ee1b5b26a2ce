"""One Redis subscription per process, fanned out in memory to everyone in it who listens.

Redis pub/sub channels are global across a server's databases (and a cluster's nodes), so every
channel name carries a deployment's prefix (`Channels`): two deployments, or two test suites, on
one Redis never hear each other.

`Subscription` holds the one connection: it subscribes to a few channels, hands each message to
its channel's handler (plain functions, run in the reading task: they must not block), pings an
idle connection so a dead one is noticed, and after every (re)connection calls `on_connected`,
where a listener reads the current state again: a message published while the connection was
down is lost, never replayed.

`Feed` is one topic's latest value and the waiters for the next one. Its updates are coalesced:
listeners are woken at most once per `min_interval`, always with the newest value, so a topic
that changes a thousand times a second wakes its thousands of streams ten times a second, not
a thousand. Listeners share the value (encode it once, in `render`, not once per listener).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Generic, TypeVar

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

logger = logging.getLogger("shared.broadcast")

# An idle subscription is pinged after this long: a connection that died silently (its ping
# unanswered as long again) is replaced, and on_connected reads what was missed, within about
# twice this long.
PING_INTERVAL_SECONDS = 5.0
RECONNECT_DELAY_SECONDS = 0.5

T = TypeVar("T")


class Channels:
    """Channel names under a deployment's prefix (settings `PUBSUB_PREFIX`)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def name(self, topic: str) -> str:
        return f"{self.prefix}{topic}"


MessageHandler = Callable[[str], None]


class Subscription:
    """One subscribed connection to Redis for this process, with a handler per channel.

    `redis_url` names a plain Redis server (on a cluster: any node; PUBLISH reaches every node's
    subscribers). The connection is its own, never one of a pool's, and it has no socket timeout:
    a quiet channel is not a broken one.
    """

    def __init__(self, redis_url: str, handlers: Mapping[str, MessageHandler], *,
                 on_connected: Callable[[], Awaitable[None]] | None = None) -> None:
        self.redis_url = redis_url
        self.handlers = dict(handlers)
        self.on_connected = on_connected
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, *, timeout: float = 5.0) -> None:
        """Subscribes, and returns once the first on_connected has run (or `timeout` passed:
        the listeners then run on what they read later, when Redis is back)."""
        self._task = asyncio.create_task(self._run())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.connected.wait()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            redis = Redis.from_url(self.redis_url, decode_responses=True,
                                   socket_connect_timeout=2, socket_timeout=None)
            try:
                async with redis.pubsub() as pubsub:
                    await pubsub.subscribe(*self.handlers)
                    if self.on_connected is not None:
                        await self.on_connected()
                    self.connected.set()
                    await self._read(pubsub)
            except (RedisError, OSError) as error:
                self.connected.clear()
                logger.warning("subscription lost; reconnecting", extra={"error": repr(error)})
            finally:
                await redis.aclose()
            await asyncio.sleep(RECONNECT_DELAY_SECONDS)

    async def _read(self, pubsub: PubSub) -> None:
        last_heard = time.monotonic()
        pinged = False
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True,
                                               timeout=PING_INTERVAL_SECONDS)
            now = time.monotonic()
            if message is None:
                if pinged and now - last_heard >= 2 * PING_INTERVAL_SECONDS:
                    # A ping a whole interval old and nothing heard, its pong included: a
                    # connection that died silently (writes to it still succeed).
                    raise RedisConnectionError("no answer to the subscription's ping")
                if not pinged and now - last_heard >= PING_INTERVAL_SECONDS:
                    await pubsub.ping()  # its pong counts as hearing from the server
                    pinged = True
                continue
            last_heard, pinged = now, False
            if message.get("type") != "message":
                continue
            handler = self.handlers.get(message["channel"])
            if handler is None:
                continue
            try:
                handler(message["data"])
            except Exception:
                # One bad message must not end the subscription for every listener.
                logger.exception("subscription handler failed",
                                 extra={"channel": message["channel"]})


class Feed(Generic[T]):
    """A topic's latest value, handed to its listeners at most once per `min_interval`, and a
    beat every `heartbeat_seconds` the topic is quiet (for streams' keep-alive lines).

    A listener awaits `wait()` (a future of its own: cancelling it touches nobody else), then
    compares `version` with the one it last handled (unchanged: a beat, or its own wake-up) and
    reads `value` and `rendered`. `close()` ends the topic: its last value is final. One timer
    per topic, none per listener: a wake costs each listener one future.
    """

    def __init__(self, value: T, render: Callable[[T], bytes], *, min_interval: float,
                 heartbeat_seconds: float = 15.0) -> None:
        self.render = render
        self.min_interval = min_interval
        self.heartbeat_seconds = heartbeat_seconds
        self.value = value
        self.rendered = render(value)
        self.version = 0
        self.closed = False
        self._waiters: list[asyncio.Future[None]] = []
        self._pending: T | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._beat: asyncio.TimerHandle | None = None
        self._last_woken = float("-inf")
        self._beat_later()

    def wait(self) -> asyncio.Future[None]:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    def update(self, value: T, *, final: bool = False) -> None:
        """A new value: listeners hear it now, or at most `min_interval` after they last
        heard one (with whatever is newest then). A final value is handed on at once."""
        if self.closed:
            return
        self._pending = value
        if final:
            self.closed = True
            self._wake()
            return
        if self._timer is not None:
            return
        wait = self._last_woken + self.min_interval - time.monotonic()
        if wait <= 0:
            self._wake()
        else:
            self._timer = asyncio.get_running_loop().call_later(wait, self._wake)

    def _wake(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending is None:
            return
        self.value, self._pending = self._pending, None
        self.rendered = self.render(self.value)
        self.version += 1
        self._last_woken = time.monotonic()
        self._wake_listeners()
        self._beat_later()

    def _wake_listeners(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _beat_later(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
        self._beat = asyncio.get_running_loop().call_later(self.heartbeat_seconds, self._on_beat)

    def _on_beat(self) -> None:
        self._beat = None
        self._wake_listeners()
        if not self.closed:
            self._beat_later()

    def discard(self) -> None:
        """Nobody listens any more: drop the timers."""
        for timer in (self._timer, self._beat):
            if timer is not None:
                timer.cancel()
        self._timer = self._beat = None
