"""A connection pool that hands out connections in the order they were asked for.

aiohttp's pool gives an idle keep-alive connection to whoever asks while it is idle. At an
opening's burst that reorders requests: the first few hundred each open a new connection,
which takes several turns of the event loop (slow turns, on a loop busy with the burst), while
the requests asked after them wait for a connection, get the ones the first answers released,
and are sent first. Measured at the gateway in `make load` (2,000 orders, 512 connections to
order_service): the earliest arrivals reached order_service up to 0.8 s after later ones, found
the line already served, and a quarter of the units went to later buyers.

A connection freed while requests wait for one is theirs: aiohttp gives an idle connection to
whoever asks next, before the waiter it woke for it has run, so a request asking in that turn of
the loop (at an opening, the next batch of the crowd, just checked while decisions are under
way) took it, and blocks of later buyers overtook earlier ones. Here a request that finds others
waiting, or woken and not yet served, for as many connections as are free, waits behind them.
This holds per address: with one limit over several (a service's replicas), a request to
another replica may still take a connection's slot freed for a waiter, as aiohttp wakes the
waiters of different addresses in no set order.

And a request that has its connection waits while an earlier request to the same address is
still opening one, and they go in the order they asked. Only openings are waited for: they end
by themselves (connected, refused, or the connect timeout), whereas an earlier request still
waiting for a free connection may be waiting for this very one. Only the same address's: an
opening to a replica that died hangs until the connect timeout, and holds up only the requests
that would have gone to it. A connection the upstream closed while its request waited is given
back, and another one taken, as the pool would have done when asked.

A last look (`last_look`), set by the caller around a request: a check made once the request
has its connection, after any wait for one, just before it is written. What it raises ends the
request unsent, its connection given back to the pool. The gateway looks there for an answer a
service published meanwhile (shared/edge_answers.py): at an opening the crowd waits here for
order_service, and once the product sells out, whoever still waits is answered at the edge.
Those still waiting for a free connection need not wait for one to be told: `look_again()`
runs the look of every request waiting for one now, and a request whose look raises ends at
once with what it raised (the gateway calls it when it hears a new edge answer).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:
    from aiohttp.client_proto import ResponseHandler
    from aiohttp.client_reqrep import ClientRequest, ConnectionKey
    from aiohttp.tracing import Trace


_LAST_LOOK: ContextVar[Callable[[], None] | None] = ContextVar("last_look", default=None)


@contextmanager
def last_look(look: Callable[[], None]) -> Iterator[None]:
    """`look()` runs when a request made within has its connection, before it is written."""
    token = _LAST_LOOK.set(look)
    try:
        yield
    finally:
        _LAST_LOOK.reset(token)


class _Turns:
    """One address's requests: the numbers of those opening a connection (a heap; the done
    ones dropped lazily), and of those holding one until every earlier opening is done."""

    def __init__(self) -> None:
        self.opening: list[int] = []
        self.opened: set[int] = set()
        self.waiting: list[tuple[int, asyncio.Future[None]]] = []

    def earliest_opening(self) -> float:
        while self.opening and self.opening[0] in self.opened:
            self.opened.discard(heapq.heappop(self.opening))
        return self.opening[0] if self.opening else math.inf

    def let_through(self) -> None:
        """Every waiting request asked before the earliest opening still going, in order."""
        earliest = self.earliest_opening()
        while self.waiting and self.waiting[0][0] < earliest:
            _, turn = heapq.heappop(self.waiting)
            if not turn.done():
                turn.set_result(None)

    @property
    def idle(self) -> bool:
        return not self.opening and not self.waiting


class InOrderConnector(aiohttp.TCPConnector):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._numbers = itertools.count()
        # While a request is in connect(): its number in the order asked.
        self._number_of: dict[int, int] = {}
        self._turns: dict[ConnectionKey, _Turns] = {}
        # Requests waiting for a free connection, with their last look; and what a look run
        # again raised, for the request it ended.
        self._looking: dict[asyncio.Task[Any], Callable[[], None]] = {}
        self._ended: dict[asyncio.Task[Any], BaseException] = {}
        # Per address, the waiters woken for a freed connection that have not yet run.
        self._woken: dict[ConnectionKey, set[asyncio.Future[None]]] = {}

    @property
    def looking(self) -> int:
        """Requests with a last look now waiting for a free connection."""
        return len(self._looking)

    def look_again(self) -> int:
        """Runs the last look of every request now waiting for a free connection; those whose
        look raises end at once with what it raised. How many ended."""
        ended = 0
        for task, look in list(self._looking.items()):
            try:
                look()
            except BaseException as error:  # what the look raises is the request's to handle
                del self._looking[task]
                self._ended[task] = error
                task.cancel()
                ended += 1
        return ended

    async def _wait_for_available_connection(self, key: ConnectionKey,
                                             traces: list[Trace]) -> None:
        look = _LAST_LOOK.get()
        task = asyncio.current_task()
        if look is None or task is None:
            await self._wait_in_queue(key, traces)
            return
        self._looking[task] = look
        cancelling = task.cancelling()
        try:
            await self._wait_in_queue(key, traces)
        except asyncio.CancelledError:
            ended = self._ended.pop(task, None)
            if ended is None:
                raise
            task.uncancel()
            if task.cancelling() > cancelling:
                raise  # cancelled by someone else too (the client gone, a timeout): theirs
            try:
                raise ended from None
            finally:
                del ended  # its traceback holds this frame: else a cycle the collector must find
        finally:
            self._looking.pop(task, None)
            self._ended.pop(task, None)

    def _queue_ahead(self, key: ConnectionKey) -> bool:
        """Requests asked earlier still wait for a connection to `key`, or were woken for
        every one free and have not taken it yet."""
        waiters = self._waiters.get(key)
        if waiters and any(not waiter.done() for waiter in waiters):
            return True
        woken = self._woken.get(key)
        return woken is not None and len(woken) >= self._available_connections(key)

    async def _wait_in_queue(self, key: ConnectionKey, traces: list[Trace]) -> None:
        """aiohttp's wait for a free connection (3.14), noting when its waiter is woken and
        when it has run."""
        attempts = 0
        while True:
            fut: asyncio.Future[None] = self._loop.create_future()
            keyed_waiters = self._waiters[key]
            keyed_waiters[fut] = None
            if attempts:
                # Woken before, and the connection gone again (closed): the queue's front.
                keyed_waiters.move_to_end(fut, last=False)
            try:
                if traces:
                    for trace in traces:
                        await trace.send_connection_queued_start()
                await fut
                if traces:
                    for trace in traces:
                        await trace.send_connection_queued_end()
            except BaseException:
                if fut.done() and not fut.cancelled() and self._available_connections(key) > 0:
                    # Woken for a freed connection and gone before taking it (a timeout, its
                    # client, its last look): the next waiter's. Newcomers wait behind the
                    # queue here, so none would take it and wake the next in turn.
                    self._release_waiter()
                raise
            finally:
                keyed_waiters.pop(fut, None)
                if not self._waiters.get(key, True):
                    del self._waiters[key]
                woken = self._woken.get(key)
                if woken is not None:
                    woken.discard(fut)
                    if not woken:
                        del self._woken[key]
            if self._available_connections(key) > 0:
                break
            attempts += 1

    def _release_waiter(self) -> None:
        """aiohttp's (3.14): the first waiter of an address with a free connection is woken,
        and noted as woken until it has run."""
        if not self._waiters:
            return
        queues = list(self._waiters)
        random.shuffle(queues)
        for key in queues:
            if self._available_connections(key) < 1:
                continue
            waiters = self._waiters[key]
            while waiters:
                waiter, _ = waiters.popitem(last=False)
                if not waiter.done():
                    waiter.set_result(None)
                    self._woken.setdefault(key, set()).add(waiter)
                    return

    async def connect(self, req: ClientRequest, traces: list[Trace],
                      timeout: aiohttp.ClientTimeout) -> aiohttp.connector.Connection:
        # Numbered before any wait behind the queue: the order asked is the order of openings.
        number = next(self._numbers)
        self._number_of[id(req)] = number
        try:
            if self._queue_ahead(req.connection_key):
                await self._wait_for_available_connection(req.connection_key, traces)
            while True:
                connection = await super().connect(req, traces, timeout)
                turns = self._turns.get(req.connection_key)
                if turns is not None and turns.earliest_opening() < number:
                    turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                    heapq.heappush(turns.waiting, (number, turn))
                    try:
                        await turn
                    except BaseException:
                        connection.release()
                        raise
                if not connection.closed:
                    look = _LAST_LOOK.get()
                    if look is not None:
                        try:
                            look()
                        except BaseException:
                            connection.release()
                            raise
                    return connection
                connection.release()  # closed by the upstream while it waited
        finally:
            del self._number_of[id(req)]

    async def _create_connection(self, req: ClientRequest, traces: list[Trace],
                                 timeout: aiohttp.ClientTimeout) -> ResponseHandler:
        number = self._number_of.get(id(req))
        if number is None:
            return await super()._create_connection(req, traces, timeout)
        key = req.connection_key
        turns = self._turns.setdefault(key, _Turns())
        heapq.heappush(turns.opening, number)
        try:
            return await super()._create_connection(req, traces, timeout)
        finally:
            turns.opened.add(number)
            turns.let_through()
            if turns.idle and self._turns.get(key) is turns:
                del self._turns[key]
