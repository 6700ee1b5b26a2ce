"""A small closed-loop HTTP load generator: N connections, each sending its next request as soon
as the last one answers, for a fixed time. Reports throughput and latency percentiles."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass(frozen=True)
class LoadResult:
    label: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    error_kinds: dict[str, int] = field(default_factory=dict)
    # Percentiles a generator reported without its raw sample (wrk): {50: ms, 99: ms, ...}.
    reported_percentiles: dict[int, float] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return self.reported_percentiles.get(int(p), float("nan"))
        ordered = sorted(self.latencies_ms)
        index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
        return ordered[index]

    def line(self) -> str:
        kinds = f" {self.error_kinds}" if self.error_kinds else ""
        return (f"{self.label:<28} {self.rps:>9.0f} req/s   p50 {self.percentile(50):>7.2f} ms   "
                f"p99 {self.percentile(99):>7.2f} ms   errors {self.errors}{kinds}")


async def run_load(label: str, url: str, *, headers: Mapping[str, str], concurrency: int,
                   duration: float, expect_status: int = 200, method: str = "GET",
                   json_bodies: Sequence[Any] = ()) -> LoadResult:
    """Connection i sends json_bodies[i % len] (if any), e.g. each its own account's login."""
    if not url.startswith(("http://127.", "http://localhost")):
        raise ValueError("load is only ever sent to loopback")
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    latencies: list[float] = []
    error_kinds: dict[str, int] = {}
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=30)) as session:
        deadline = time.perf_counter() + duration

        async def worker(index: int) -> None:
            body = json_bodies[index % len(json_bodies)] if json_bodies else None
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    async with session.request(method, url, headers=headers,
                                               json=body) as response:
                        await response.read()
                        kind = "" if response.status == expect_status else str(response.status)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    kind = type(exc).__name__
                if kind:
                    error_kinds[kind] = error_kinds.get(kind, 0) + 1
                else:
                    latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker(index) for index in range(concurrency)))
        elapsed = time.perf_counter() - started
    return LoadResult(label, len(latencies), sum(error_kinds.values()), elapsed, latencies,
                      error_kinds)
