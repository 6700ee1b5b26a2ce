"""A small closed-loop HTTP load generator: N connections, each sending its next request as soon
as the last one answers, for a fixed time. Reports throughput and latency percentiles."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp


@dataclass(frozen=True)
class LoadResult:
    label: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
        return ordered[index]

    def line(self) -> str:
        return (f"{self.label:<28} {self.rps:>9.0f} req/s   p50 {self.percentile(50):>7.2f} ms   "
                f"p99 {self.percentile(99):>7.2f} ms   errors {self.errors}")


async def run_load(label: str, url: str, *, headers: Mapping[str, str], concurrency: int,
                   duration: float, expect_status: int = 200) -> LoadResult:
    if not url.startswith(("http://127.", "http://localhost")):
        raise ValueError("load is only ever sent to loopback")
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    latencies: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=30)) as session:
        deadline = time.perf_counter() + duration

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    async with session.get(url, headers=headers) as response:
                        await response.read()
                        ok = response.status == expect_status
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                if ok:
                    latencies.append((time.perf_counter() - started) * 1000)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return LoadResult(label, len(latencies), errors, elapsed, latencies)
