"""The buyers at a sale's opening, as a lean asyncio crowd: one bare HTTP/1.1 connection object
per socket (httptools parses the answers, uvloop runs the loop), so that one process holds
thousands of buyers, each with its own connections, where Locust's users cost too much CPU on
two cores (20,000 buyers at once).

Each buyer does what a client of API.md does:

1. Before the opening (its start spread over the first part of the lead): opens its connection
   to the gateway and reads its orders once (the app is open: the token seen, the connection
   warm); opens the product's `GET /live` stream and takes the clock from its first event
   (`server_time` is Redis's clock, the one the sale window is judged by). A `--live-share`
   of the buyers keep the stream open until they press buy, the others close it after the
   first event (a glance at the countdown).
2. At `sale_opens_at` by the server's clock (or when its live stream says `open`, if that comes
   first) it closes its live stream (the page moves on) and sends `POST /orders` (a
   `--double-tap` share send two at once, on two connections).
3. A `202` with a ticket is followed to its final answer through the ticket's `/events`
   stream (through `?wait=` when the stream ends without one), and read again once a little
   later, so that a ticket whose answer changes is seen.
4. With an order it walks away (`--walk-away`) or pays after 0.5-3 s, a `--declined` share with
   the card that is always declined.

    python -m loadtests.crowd --seed-file seed.json --hosts http://127.0.0.1:8000 \\
        --out crowd.json [--buyers N] [--shard I --shards N]

Writes (`--out`) every buyer's record (`BuyerRecord`), every order and payment answer in the
outcomes file's record form, and the count of every other answer by route, status and code.
Only ever sends to loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import resource
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import httptools
import uvloop

from loadtests.seed_file import SaleSeed
from shared import heap

CARD_OK = "4242424242424242"
CARD_DECLINED = "4000000000000002"
FINAL_STATES = ("ordered", "refused")
# A ticket's events stream that gives no final answer in this long is given up for ?wait=.
STREAM_SECONDS = 30.0
WAIT_SECONDS = 25
# Seconds before the opening within which a buyer opens the connection it buys on.
CONNECT_BEFORE = (0.5, 3.0)


# --- One HTTP/1.1 connection -----------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection, one request at a time. A response's body is either kept whole
    or, for an event stream, handed to `on_chunk` as it arrives."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._head: asyncio.Future[int] | None = None
        self._done: asyncio.Future[Response] | None = None
        self._on_chunk: Callable[[bytes], None] | None = None
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []

    @classmethod
    async def open(cls, host: str, port: int) -> HttpConnection:
        _, connection = await asyncio.get_running_loop().create_connection(cls, host, port)
        return connection

    def send(self, raw: bytes, on_chunk: Callable[[bytes], None] | None = None,
             ) -> tuple[asyncio.Future[int], asyncio.Future[Response]]:
        """Writes one request; returns futures for its status line and its whole answer."""
        if self.closed or self.transport is None:
            raise ConnectionError("connection closed")
        loop = asyncio.get_running_loop()
        self._head, self._done = loop.create_future(), loop.create_future()
        self._on_chunk = on_chunk
        self.transport.write(raw)
        return self._head, self._done

    @property
    def idle(self) -> bool:
        """No answer still arriving: the connection can carry the next request."""
        return not self.closed and (self._done is None or self._done.done())

    async def request(self, raw: bytes) -> Response:
        return await self.send(raw)[1]

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()
        self.closed = True

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(ConnectionError(f"unreadable answer: {error}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionError("connection closed by the server"))

    def _fail(self, error: BaseException) -> None:
        for future in (self._head, self._done):
            if future is not None and not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: a stream's caller may await only its head

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._headers = {}
        self._body = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        if self._head is not None and not self._head.done():
            self._head.set_result(self.parser.get_status_code())

    def on_body(self, body: bytes) -> None:
        # A refusal instead of the stream is kept whole, as any answer.
        if self._on_chunk is not None and self.parser.get_status_code() == 200:
            self._on_chunk(body)
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        done = self._done
        if done is not None and not done.done():
            done.set_result(Response(self.parser.get_status_code(), self._headers,
                                     b"".join(self._body)))
        if not self.parser.should_keep_alive():
            self.close()


class EventParser:
    """Server-sent events out of a stream's chunks: the data of each event (comments and the
    `id`/`event` fields are not needed here)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[str]:
        self._buffer += chunk.replace(b"\r\n", b"\n")
        *events, self._buffer = self._buffer.split(b"\n\n")
        found = []
        for event in events:
            data = [line[5:].lstrip() for line in event.split(b"\n") if line.startswith(b"data:")]
            if data:
                found.append(b"\n".join(data).decode())
        return found


def problem_code(response: Response) -> str:
    if response.status < 400:
        return ""
    try:
        body = response.json()
    except ValueError:
        return "not_json"
    return str(body.get("code", "")) if isinstance(body, dict) else ""


def epoch_of(iso_z: str) -> float:
    return datetime.fromisoformat(iso_z.replace("Z", "+00:00")).timestamp()


# --- What a buyer saw --------------------------------------------------------------------------


@dataclass
class Tap:
    """One `POST /orders`: its first answer, and its final one (for a 202, the ticket's)."""

    sent: float = 0.0
    status: int = 0  # of the first answer; 0: none
    code: str = ""
    answered: float | None = None
    ticket: str | None = None
    position: int | None = None  # the 202's, then the nearest the front seen while it waited
    # While it waited: how often its position came nearer the front, and when it last did (or
    # when the ticket came); with final_at, how long a buyer watched a line that did not move.
    moves: int = 0
    moved_at: float | None = None
    longest_unmoved: float = 0.0
    # "ordered" or "refused"; None: no final answer
    state: str | None = None
    final_code: str = ""
    final_status: int = 0  # 201 for an order; a refusal's problem status (409, or a 5xx)
    order_id: int | None = None
    final_at: float | None = None
    # Every final answer seen for this tap ("ordered 12", "refused sold_out"): on the ticket's
    # stream, its ?wait= reads and the read again afterwards. More than one is a breach.
    finals: list[str] = field(default_factory=list)
    # Attempts of this POST cut by a fault (a 5xx, no answer, its key still held by an attempt
    # that died) and sent again with the same Idempotency-Key (`retry_for`).
    retried: int = 0

    def moved(self, position: int | None, at: float) -> None:
        """Its position came nearer the front (None: its wait ended) at `at`."""
        since = self.moved_at if self.moved_at is not None else self.answered
        if since is not None:
            self.longest_unmoved = max(self.longest_unmoved, at - since)
        if position is not None:
            self.moves += 1
            self.position = position
        self.moved_at = at

    def finish(self, state: str, code: str, order_id: int | None, at: float,
               status: int) -> None:
        seen = f"ordered {order_id}" if state == "ordered" else f"refused {code}"
        if seen not in self.finals:
            self.finals.append(seen)
        if self.state is None:
            self.state, self.final_code, self.order_id, self.final_at, self.final_status = (
                state, code, order_id, at, status)


@dataclass
class BuyerRecord:
    index: int
    user_id: int
    live_status: int = 0  # of its GET /live; 0: never answered
    clock_offset: float = 0.0  # server_time minus this machine's clock, seconds
    taps: list[Tap] = field(default_factory=list)
    error: str = ""


# --- The crowd ----------------------------------------------------------------------------------


@dataclass
class CrowdOptions:
    hosts: list[str]
    walk_away: float = 0.2
    declined: float = 0.2
    double_tap: float = 0.05
    live_share: float = 1.0
    ramp: float = 20.0  # seconds over which buyers arrive before the opening
    deadline: float = 60.0  # seconds after the opening by which every buyer is given up
    retry_for: float = 0.0  # seconds a 5xx order or payment is retried with its key


class Crowd:
    def __init__(self, seed: SaleSeed, accounts: Sequence[tuple[int, dict[str, Any]]],
                 options: CrowdOptions) -> None:
        self.seed = seed
        self.accounts = accounts
        self.options = options
        self.counts: Counter[tuple[str, int, str]] = Counter()
        self.records: list[list[Any]] = []  # [route, status, code, sent, latency ms]
        self.buyers: list[BuyerRecord] = []
        self.retried = 0  # attempts answered 5xx and sent again with the same Idempotency-Key

    async def run(self) -> None:
        start = time.time()
        ramp = max(0.0, min(self.options.ramp, self.seed.opens_at - start - 2.0))
        buyers = [Buyer(self, index, account, start + ramp * n / max(1, len(self.accounts)))
                  for n, (index, account) in enumerate(self.accounts)]
        self.buyers = [b.record for b in buyers]
        tasks = [asyncio.ensure_future(b.run()) for b in buyers]
        timeout = max(1.0, self.seed.opens_at + self.options.deadline - time.time())
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for buyer in buyers:
            buyer.close()

    def count(self, route: str, response: Response | None) -> None:
        status = response.status if response is not None else 0
        self.counts[(route, status, problem_code(response) if response else "no_answer")] += 1

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {"counts": [[*key, n] for key, n in sorted(self.counts.items())],
                "records": self.records, "buyers": [asdict(b) for b in self.buyers],
                "retried": self.retried}


class Buyer:
    def __init__(self, crowd: Crowd, index: int, account: dict[str, Any], arrives: float) -> None:
        self.crowd = crowd
        self.options = crowd.options
        self.seed = crowd.seed
        self.arrives = arrives
        url = urlsplit(self.options.hosts[index % len(self.options.hosts)])
        if url.hostname not in ("127.0.0.1", "localhost"):
            raise ValueError("the crowd only ever sends to loopback")
        self.host, self.port = url.hostname, url.port or 80
        self.authority = f"{self.host}:{self.port}"
        self.token = str(account["access_token"])
        self.record = BuyerRecord(index, int(account["user_id"]))
        self.connections: list[HttpConnection] = []
        self.live: HttpConnection | None = None
        # Set when the held live stream says the sale is open.
        self.sale_open: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def raw(self, method: str, path: str, body: Any = None, key: str | None = None) -> bytes:
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.authority}\r\n"
                f"Authorization: Bearer {self.token}\r\n")
        if key is not None:
            head += f"Idempotency-Key: {key}\r\n"
        if body is None:
            return (head + "\r\n").encode()
        data = json.dumps(body, separators=(",", ":")).encode()
        return (head + f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
                ).encode() + data

    async def connection(self, n: int = 0) -> HttpConnection:
        """This buyer's n-th API connection, opened again when it was closed."""
        while len(self.connections) <= n:
            self.connections.append(await HttpConnection.open(self.host, self.port))
        if self.connections[n].closed:
            self.connections[n] = await HttpConnection.open(self.host, self.port)
        return self.connections[n]

    async def call(self, route: str, method: str, path: str, body: Any = None, *, n: int = 0,
                   counted: bool = True, timeout: float = 30.0,
                   key: str | None = None) -> Response | None:
        try:
            connection = await self.connection(n)
            response: Response | None = await asyncio.wait_for(
                connection.request(self.raw(method, path, body, key)), timeout)
        except (OSError, TimeoutError) as error:
            self.record.error = self.record.error or f"{route}: {type(error).__name__}"
            if n < len(self.connections):
                self.connections[n].close()
            response = None
        if counted:
            self.crowd.count(route, response)
        return response

    def close(self) -> None:
        for connection in self.connections:
            connection.close()
        if self.live is not None:
            self.live.close()

    async def run(self) -> None:
        try:
            await asyncio.sleep(max(0.0, self.arrives - time.time()))
            await self.call("GET /orders", "GET", "/api/v1/orders?limit=1",
                            timeout=self.until_opening())
            await self.watch_live()
            opens_here = self.seed.opens_at - self.record.clock_offset
            # The gateway closes a connection idle for 5 s (uvicorn's keep-alive): the one
            # the buy goes out on is opened a moment before the opening, spread over the
            # last seconds as a crowd's taps on the page would, not at the press itself.
            await asyncio.wait({self.sale_open}, timeout=max(
                0.0, opens_here - random.uniform(*CONNECT_BEFORE) - time.time()))
            for n in range(len(self.connections)):
                self.connections[n].close()
            taps = 2 if random.random() < self.options.double_tap else 1
            with contextlib.suppress(OSError, TimeoutError):
                for n in range(taps):  # a double tap goes out on two connections at once
                    await asyncio.wait_for(self.connection(n), self.until_opening())
            # The countdown, or the stream's event that the sale is open if it comes first
            # (a first event replayed from a cache carries an older server_time: its
            # countdown runs late).
            await asyncio.wait({self.sale_open}, timeout=max(0.0, opens_here - time.time()))
            if self.live is not None:
                self.live.close()  # the page moves on from the countdown
            await self.buy(taps)
        except Exception as error:  # a buyer's fault is reported, never the crowd's end
            self.record.error = self.record.error or f"{type(error).__name__}: {error}"
        finally:
            self.close()

    def until_opening(self) -> float:
        """Seconds left to wait before the opening, for a step that must not delay the press."""
        return max(0.05, self.seed.opens_at - time.time() - 0.1)

    async def watch_live(self) -> None:
        """Opens the product's live stream and takes the server's clock from its first event."""
        route = "GET /products/{id}/live"
        events = EventParser()
        first: asyncio.Future[float] = asyncio.get_running_loop().create_future()

        def on_chunk(chunk: bytes) -> None:
            for data in events.feed(chunk):
                body = json.loads(data)
                if not first.done() and "server_time" in body:
                    first.set_result(epoch_of(body["server_time"]) - time.time())
                if body.get("sale_state") == "open" and not self.sale_open.done():
                    self.sale_open.set_result(None)

        try:
            self.live = await HttpConnection.open(self.host, self.port)
            head, done = self.live.send(
                self.raw("GET", f"/api/v1/products/{self.seed.product_id}/live"), on_chunk)
            # A buyer whose stream is late presses by its own clock rather than miss the
            # opening (the same clock here; a remote crowd's needs NTP then).
            self.record.live_status = await asyncio.wait_for(head, self.until_opening())
            if self.record.live_status != 200:
                self.crowd.count(route, await asyncio.wait_for(done, self.until_opening()))
                return
            self.crowd.counts[(route, 200, "")] += 1
            self.record.clock_offset = await asyncio.wait_for(first, self.until_opening())
        except (OSError, TimeoutError) as error:
            self.record.error = f"{route}: {type(error).__name__}"
            if self.record.live_status == 0:
                self.crowd.counts[(route, 0, type(error).__name__)] += 1
        finally:
            if self.live is not None and (random.random() >= self.options.live_share
                                          or self.record.live_status != 200):
                self.live.close()

    async def buy(self, taps: int) -> None:
        body = {"product_id": self.seed.product_id, "quantity": 1}
        self.record.taps = [Tap() for _ in range(taps)]
        await asyncio.gather(*(self.order(tap, body, n) for n, tap in enumerate(self.record.taps)))
        for n, tap in enumerate(self.record.taps):
            if tap.state == "ordered" and random.random() >= self.options.walk_away:
                await asyncio.sleep(random.uniform(0.5, 3.0))  # typing the card in
                card = CARD_DECLINED if random.random() < self.options.declined else CARD_OK
                await self.pay(tap, card, n)
        await self.read_tickets_again()

    async def send(self, route: str, path: str, body: dict[str, Any], n: int,
                   tap: Tap | None = None) -> Response | None:
        """One POST; with `retry_for`, an attempt answered 5xx (or nothing, or 409
        idempotency_key_in_use) is sent again with the same Idempotency-Key, as API.md tells
        clients to, until an answer or `retry_for` seconds; those attempts are only counted."""
        key = uuid.uuid4().hex if self.options.retry_for > 0 else None
        started = time.monotonic()
        while True:
            response = await self.call(route, "POST", path, body, n=n, counted=False,
                                       timeout=self.options.deadline, key=key)
            status = response.status if response is not None else 0
            if not (key and time.monotonic() - started < self.options.retry_for and (
                    status >= 500 or status == 0 or (
                        response is not None
                        and problem_code(response) == "idempotency_key_in_use"))):
                return response
            self.crowd.retried += 1
            if tap is not None:
                tap.retried += 1
            retry_after = response.headers.get("retry-after") if response is not None else None
            await asyncio.sleep(min(5.0, float(retry_after or 1)))

    async def order(self, tap: Tap, body: dict[str, Any], n: int) -> None:
        await self.connection(n)
        tap.sent = time.time()
        response = await self.send("POST /orders", "/api/v1/orders", body, n, tap)
        tap.answered = time.time()
        if response is None:
            tap.code = self.record.error.rpartition(" ")[2] or "no_answer"
            self.crowd.records.append(["POST /orders", 0, tap.code, tap.sent,
                                       (tap.answered - tap.sent) * 1000])
            return
        tap.status, tap.code = response.status, problem_code(response)
        self.crowd.records.append(["POST /orders", tap.status, tap.code, tap.sent,
                                   (tap.answered - tap.sent) * 1000])
        if response.status == 201:
            tap.finish("ordered", "", int(response.json()["id"]), tap.answered, 201)
        elif response.status == 409:
            tap.finish("refused", tap.code, None, tap.answered, 409)
        elif response.status == 202:
            ticket = response.json()
            tap.ticket, tap.position = str(ticket["ticket"]), ticket.get("position")
            await self.follow_ticket(tap, self.status_path(ticket), n)

    @staticmethod
    def status_path(ticket: dict[str, Any]) -> str:
        url = str(ticket.get("status_url") or f"/api/v1/orders/tickets/{ticket['ticket']}")
        return urlsplit(url).path

    def take(self, tap: Tap, body: Any, at: float) -> None:
        """A ticket's body, from its stream or a read: a final state finishes the tap, a
        position nearer the front is a move."""
        if not isinstance(body, dict):
            return
        if body.get("state") == "waiting" and tap.state is None:
            position, shown = body.get("position"), tap.position
            if isinstance(position, int) and shown is not None and position < shown:
                tap.moved(position, at)
            return
        if body.get("state") not in FINAL_STATES:
            return
        if tap.state is None:
            tap.moved(None, at)  # the wait ends here
        order = body.get("order") or {}
        problem = body.get("problem") or {}
        ordered = body["state"] == "ordered"
        tap.finish(str(body["state"]), str(problem.get("code", "")),
                   int(order["id"]) if "id" in order else None, at,
                   201 if ordered else int(problem.get("status") or 409))

    async def follow_ticket(self, tap: Tap, path: str, n: int) -> None:
        """The ticket's events stream until a final state; ?wait= reads if it ends without."""
        route = "GET /orders/tickets/{ticket}/events"
        events = EventParser()
        final: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_chunk(chunk: bytes) -> None:
            for data in events.feed(chunk):
                self.take(tap, json.loads(data), time.time())
                if tap.state is not None and not final.done():
                    final.set_result(None)

        connection = await self.connection(n)
        try:
            head, done = connection.send(self.raw("GET", f"{path}/events"), on_chunk)
            status = await asyncio.wait_for(head, STREAM_SECONDS)
            if status != 200:
                self.crowd.count(route, await asyncio.wait_for(done, STREAM_SECONDS))
            else:
                self.crowd.counts[(route, 200, "")] += 1
                waits: set[asyncio.Future[Any]] = {final, done}
                await asyncio.wait(waits, timeout=STREAM_SECONDS,
                                   return_when=asyncio.FIRST_COMPLETED)
                if not done.done():
                    # A second (different) final event on the same stream would show here.
                    await asyncio.wait({done}, timeout=0.5)
        except (OSError, TimeoutError):
            pass
        if not connection.idle:
            connection.close()  # the stream still open: this connection is spent
        deadline = self.seed.opens_at + self.options.deadline
        while tap.state is None and time.time() < deadline:
            response = await self.call("GET /orders/tickets/{ticket}", "GET",
                                       f"{path}?wait={WAIT_SECONDS}", n=n,
                                       timeout=WAIT_SECONDS + 5)
            if response is not None and response.status == 200:
                self.take(tap, response.json(), time.time())
            elif response is not None and response.status != 200:
                break  # the ticket is not answered: no final answer for this tap

    async def read_tickets_again(self) -> None:
        """Each ticket once more, a moment after its final answer: the answer must not change."""
        ticketed = [tap for tap in self.record.taps if tap.ticket and tap.state is not None]
        if not ticketed:
            return
        await asyncio.sleep(random.uniform(1.0, 3.0))
        for tap in ticketed:
            response = await self.call("GET /orders/tickets/{ticket}", "GET",
                                       f"/api/v1/orders/tickets/{tap.ticket}")
            if response is not None and response.status == 200:
                self.take(tap, response.json(), time.time())

    async def pay(self, tap: Tap, card: str, n: int) -> None:
        sent = time.time()
        response = await self.send("POST /payments", "/api/v1/payments",
                                   {"order_id": tap.order_id, "card_number": card}, n)
        status = response.status if response is not None else 0
        code = problem_code(response) if response is not None else "no_answer"
        if response is not None and status == 201:
            code = str(response.json()["status"])  # succeeded or failed: both 201
        self.crowd.records.append(["POST /payments", status, code, sent,
                                   (time.time() - sent) * 1000])


# --- Command -----------------------------------------------------------------------------------


def raise_open_files_limit() -> int:
    """To the hard limit: every buyer holds a socket or two."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seed-file", type=Path, required=True)
    parser.add_argument("--hosts", required=True,
                        help="gateways, comma-separated; buyer i uses the (i mod n)-th")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--buyers", type=int, default=None,
                        help="the seed's first N accounts (default: all)")
    parser.add_argument("--shard", type=int, default=0, help="this process's share of buyers")
    parser.add_argument("--shards", type=int, default=1, help="processes sharing the buyers")
    parser.add_argument("--walk-away", type=float, default=0.2)
    parser.add_argument("--declined", type=float, default=0.2)
    parser.add_argument("--double-tap", type=float, default=0.05)
    parser.add_argument("--live-share", type=float, default=1.0,
                        help="share of buyers holding the live stream until they buy")
    parser.add_argument("--ramp", type=float, default=20.0)
    parser.add_argument("--deadline", type=float, default=60.0,
                        help="seconds after the opening by which every buyer is given up")
    parser.add_argument("--retry-for", type=float, default=0.0,
                        help="seconds a 5xx order or payment is retried with its Idempotency-Key")
    args = parser.parse_args(argv)
    seed = SaleSeed.read(args.seed_file)
    pool = seed.accounts[:args.buyers] if args.buyers is not None else seed.accounts
    mine = list(enumerate(pool))[args.shard::args.shards]
    raise_open_files_limit()
    # Its buyers' streams and records are thousands of long-lived objects: with the collector's
    # defaults, full collections stalled this one process for hundreds of milliseconds around
    # the opening, and every buyer's clock with it (shared/heap.py).
    heap.settle("production")
    crowd = Crowd(seed, mine, CrowdOptions(
        hosts=args.hosts.split(","), walk_away=args.walk_away, declined=args.declined,
        double_tap=args.double_tap, live_share=args.live_share, ramp=args.ramp,
        deadline=args.deadline, retry_for=args.retry_for))
    uvloop.run(crowd.run())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(crowd.as_dict()))
    sys.exit(0)


if __name__ == "__main__":
    main()
