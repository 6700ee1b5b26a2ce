"""Live stock streams at scale: N open `GET /api/v1/products/{id}/live` streams through the
gateway (default 10,000), and how fast a stock change reaches them.

    python -m loadtests.bench_live [--streams 10000] [--gateways N] [--changes 5] [--seconds 5]

It starts its own user_service, stock_service and gateway on loopback (schemas of their own,
the Redis database BENCH_REDIS_URL, a PUBSUB_PREFIX of its own), raises its open-files limit
(inherited by the processes it starts: each stream holds a socket in this process and one in
the gateway, which shares one upstream stream among all of a product's clients,
gateway/fanout.py), registers one product at stock_service, then:

1. measures the hello-world and `GET /stock` through the gateway with no stream open (wrk);
2. opens the streams (in batches, each waiting for its first event) and reports the memory
   each open stream costs the gateway and stock_service (RSS growth / streams);
3. makes `--changes` stock changes (one reserve each, straight to stock_service, `--wait`
   apart) and records when each stream saw the new remaining count (or a later one: a stream
   that lags gets the newest state, the ones between coalesced): the share within 500 ms
   (goal: 99 %) and the percentiles, from the reserve's send to the event's arrival here, and
   the CPU each process spent per delivered event (what the machine's load does not change);
4. measures the hello-world and `GET /stock` through the gateway again, with every stream
   still open: the streams must not starve ordinary requests.

When the open-files limit cannot be raised far enough (no privilege to raise the hard limit),
the streams are spread over as many gateway processes on the same services as it takes
(`--gateways`), as replicas behind a load balancer would be.

Streams are read by a bare asyncio protocol per connection (a Python HTTP client per stream
would cost this process more than the services it measures).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import aiohttp
import uvloop

from loadtests.load import LoadResult
from loadtests.signed import sign
from loadtests.system import BENCH_REDIS_URL, cpu_seconds, hello_world, service_system
from loadtests.wrk import generator_name, measure
from shared.internal.stock import hold_path, product_path
from shared.testing.datastores import forget_redis_keys
from shared.testing.identity import service_identity_headers
from shared.testing.net import ServiceProcess

GOAL_MS = 500.0
GOAL_SHARE = 0.99
OPEN_FILES = 65_536
BATCH = 250
_REMAINING = re.compile(rb'"remaining":(\d+)')


def raise_open_files_limit() -> int:
    """To OPEN_FILES for this process and the processes it starts (raising the hard limit
    needs the privilege to; without it, as far as the hard limit allows)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < OPEN_FILES:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, max(OPEN_FILES, hard)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class StreamReader(asyncio.Protocol):
    """One open stream: remembers when each remaining count was first seen."""

    request: bytes
    opened: asyncio.Future[None]
    seen: dict[int, float] = field(default_factory=dict)
    closed: bool = False
    received: bytes = b""  # the first bytes, for a report when the stream does not open
    _tail: bytes = b""

    def protocol(self) -> StreamReader:
        return self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if len(self.received) < 300:
            self.received += data
        chunk = self._tail + data
        for match in _REMAINING.finditer(chunk):
            self.seen.setdefault(int(match[1]), now)
        self._tail = chunk[-64:]
        if self.seen and not self.opened.done():
            self.opened.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("stream closed before its first event"))


async def open_streams(host: str, port: int, path: str, count: int) -> list[StreamReader]:
    loop = asyncio.get_running_loop()
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
               "Accept: text/event-stream\r\n\r\n").encode()
    readers: list[StreamReader] = []
    for start in range(0, count, BATCH):
        batch = [StreamReader(request, loop.create_future())
                 for _ in range(min(BATCH, count - start))]
        await asyncio.gather(*(loop.create_connection(reader.protocol, host, port)
                               for reader in batch))
        try:
            async with asyncio.timeout(30):
                await asyncio.gather(*(r.opened for r in batch))
        except TimeoutError:
            silent = [r for r in batch if not r.opened.done()]
            raise RuntimeError(f"{len(silent)} streams had no first event in 30 s; one had "
                               f"{silent[0].received[:300]!r}") from None
        readers += batch
    return readers


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


async def reserve_one(session: aiohttp.ClientSession, stock_url: str, product_id: int,
                      order_id: int, identity_key: str) -> None:
    body = json.dumps({"user_id": order_id, "quantity": 1}).encode()
    signed = sign(service_identity_headers("order_service", identity_key), method="PUT",
                  target=hold_path(product_id, order_id), body=body, audience="stock_service")
    async with session.put(stock_url + hold_path(product_id, order_id), data=body,
                           headers={**signed, "Content-Type": "application/json"}) as reply:
        assert reply.status == 200, await reply.text()


async def side_by_side(label: str, hello_url: str, stock_url: str,
                       seconds: float) -> tuple[LoadResult, LoadResult]:
    hello = await measure(f"hello-world ({label})", hello_url, headers={}, connections=64,
                          seconds=seconds)
    print(hello.line(), flush=True)
    stock = await measure(f"gateway GET /stock ({label})", stock_url, headers={},
                          connections=64, seconds=seconds)
    print(stock.line(), flush=True)
    print(f"  ratio GET /stock / hello-world ({label}): {stock.rps / hello.rps:.2f}", flush=True)
    return hello, stock


async def run(args: argparse.Namespace, hello_url: str, stock_url: str, gateway_urls: list[str],
              pids: dict[str, int], identity_key: str) -> None:
    product_id = int.from_bytes(os.urandom(4), "big") + 1
    total = 1_000 + args.changes
    body = json.dumps({"seller_id": 1, "price": 1_000, "total": total}).encode()
    signed = sign(service_identity_headers("product_service", identity_key), method="PUT",
                  target=product_path(product_id), body=body, audience="stock_service")
    async with aiohttp.ClientSession() as session:
        async with session.put(stock_url + product_path(product_id), data=body,
                               headers={**signed, "Content-Type": "application/json"}) as reply:
            assert reply.status == 200, await reply.text()
        stock_path = f"{gateway_urls[0]}/api/v1/products/{product_id}/stock"
        print(f"load generator: {generator_name()}; streams: {args.streams} through "
              f"{len(gateway_urls)} gateway process(es); open files limit "
              f"{resource.getrlimit(resource.RLIMIT_NOFILE)[0]}", flush=True)
        await side_by_side("no stream open", hello_url, stock_path, args.seconds)

        before = {name: rss_bytes(pid) for name, pid in pids.items()}
        started = time.monotonic()
        readers: list[StreamReader] = []
        for index, gateway_url in enumerate(gateway_urls):
            host, port = gateway_url.removeprefix("http://").split(":")
            share = args.streams // len(gateway_urls) + (index < args.streams % len(gateway_urls))
            readers += await open_streams(host, int(port),
                                          f"/api/v1/products/{product_id}/live", share)
        opened_in = time.monotonic() - started
        await asyncio.sleep(1)
        after = {name: rss_bytes(pid) for name, pid in pids.items()}
        print(f"\n{len(readers)} streams open in {opened_in:.1f} s; memory per open stream:")
        for name in pids:
            grown = after[name] - before[name]
            streams = len(readers) // len(gateway_urls) if name.startswith("gateway") \
                else len(readers)
            print(f"  {name:<10} RSS {before[name] / 2**20:7.1f} -> {after[name] / 2**20:7.1f} MiB"
                  f"   {grown / streams / 1024:6.1f} KiB per stream ({streams} streams)")

        delays: list[float] = []
        missing = 0
        cpu_before = {name: cpu_seconds(pid) for name, pid in {**pids, "bench": os.getpid()}.items()}
        for change in range(args.changes):
            expected = total - change - 1
            sent = time.monotonic()
            await reserve_one(session, stock_url, product_id, 10**9 + change, identity_key)
            await asyncio.sleep(args.wait)
            # Seen: this state or a later one (a stream that lags is handed the newest state
            # when it gets its turn, the intermediate ones coalesced away).
            seen_by = 0
            for reader in readers:
                at = min((t for remaining, t in reader.seen.items() if remaining <= expected),
                         default=None)
                if at is None:
                    missing += 1
                else:
                    seen_by += 1
                    delays.append((at - sent) * 1000)
            print(f"change {change + 1}: seen by {seen_by}/{len(readers)}", flush=True)
        cpu = {name: cpu_seconds(pid) - cpu_before[name]
               for name, pid in {**pids, "bench": os.getpid()}.items()}
        closed = sum(r.closed for r in readers)
        within = sum(d <= GOAL_MS for d in delays)
        deliveries = len(readers) * args.changes
        print(f"\n{args.changes} changes x {len(readers)} streams: {len(delays)} delivered, "
              f"{missing} missing, {closed} streams closed")
        if delays:
            print(f"change -> event: p50 {percentile(delays, 50):.0f} ms, "
                  f"p90 {percentile(delays, 90):.0f} ms, p99 {percentile(delays, 99):.0f} ms, "
                  f"max {max(delays):.0f} ms, mean {statistics.fmean(delays):.0f} ms")
        print(f"within {GOAL_MS:.0f} ms: {within / deliveries:.2%} of deliveries "
              f"(goal {GOAL_SHARE:.0%})", flush=True)
        print("CPU per delivered event (all CPU of each process during the changes, idle "
              "streams' upkeep included): " + ", ".join(
                  f"{name} {seconds / deliveries * 1e6:.0f} us" for name, seconds in cpu.items()))
        print(f"machine load average at the end: {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} cores\n", flush=True)

        await side_by_side(f"{len(readers)} streams open", hello_url, stock_path, args.seconds)
        for reader in readers:
            reader.transport.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--changes", type=int, default=5)
    parser.add_argument("--wait", type=float, default=4.0,
                        help="seconds after each change before it is counted")
    parser.add_argument("--seconds", type=float, default=5.0, help="each wrk measurement")
    parser.add_argument("--gateways", type=int, default=0,
                        help="gateway processes to spread the streams over (default: as few "
                             "as the open-files limit allows)")
    args = parser.parse_args()
    limit = raise_open_files_limit()
    if limit < args.streams + 1_000:
        parser.error(f"open files limit {limit} is too low for {args.streams} streams")
    gateways = args.gateways or -(-args.streams // (limit - 1_000))
    for prefix in ("{p:", "stock:", "bench-live"):
        forget_redis_keys(BENCH_REDIS_URL, prefix)
    workdir = Path(tempfile.mkdtemp(prefix="bench-live-"))
    with hello_world() as hello_url, service_system(
            ["user", "stock"], workdir, redis_url=BENCH_REDIS_URL, schema_suffix="bench",
            env={"PUBSUB_PREFIX": f"bench-live-{os.getpid()}:"}) as system:
        replicas = [ServiceProcess(f"gateway{index + 2}", "gateway.app:create_app",
                                   log_dir=workdir, env=system.gateway.env)
                    for index in range(gateways - 1)]
        try:
            for replica in replicas:
                replica.start().wait_healthy()
            pids = {"stock": system.pids()["stock"], "gateway": system.pids()["gateway"]}
            pids.update({replica.name: replica.process.pid for replica in replicas
                         if replica.process is not None})
            uvloop.run(run(args, hello_url, system.processes["stock"].url,
                           [system.gateway.url, *(replica.url for replica in replicas)],
                           pids, system.identity_key))
        finally:
            for replica in replicas:
                replica.stop()


if __name__ == "__main__":
    main()
