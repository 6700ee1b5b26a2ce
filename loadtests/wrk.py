"""Load from wrk (a C load generator; Debian package `wrk`) when it is installed: it costs far
less CPU per request than a Python client, which matters when the load generator shares the
machine's two cores with what it measures. Falls back to loadtests.load otherwise."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from loadtests.load import LoadResult, run_load

_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
_TOTAL = re.compile(r"(\d+) requests in ([\d.]+)(ms|s|m)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_PERCENTILE = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def generator_name() -> str:
    return "wrk" if have_wrk() else "loadtests.load (aiohttp; install the Debian package wrk)"


def parse_wrk(label: str, output: str) -> LoadResult:
    """wrk's report (with --latency) as a LoadResult; percentiles only, no full sample."""
    rate = _RATE.search(output)
    total = _TOTAL.search(output)
    if rate is None or total is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    seconds = float(total.group(2)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[total.group(3)]
    non_2xx = int(m.group(1)) if (m := _NON_2XX.search(output)) else 0
    socket = [int(x) for x in m.groups()] if (m := _SOCKET_ERRORS.search(output)) else [0, 0, 0, 0]
    kinds = {k: v for k, v in (("non-2xx", non_2xx), ("socket", sum(socket))) if v}
    percentiles = {int(p): float(v) * _UNIT_MS[unit] for p, v, unit in _PERCENTILE.findall(output)}
    good = int(total.group(1)) - non_2xx
    return LoadResult(label, good, sum(kinds.values()), seconds, [], kinds, percentiles)


async def measure(label: str, url: str, *, headers: Mapping[str, str], connections: int,
                  seconds: float, threads: int = 2, script: Path | None = None) -> LoadResult:
    """`script`: a wrk Lua script whose request() builds each request (a method and body other
    than GET, a path per request); it needs wrk, there is no fallback for it."""
    if not url.startswith(("http://127.", "http://localhost")):
        raise ValueError("load is only ever sent to loopback")
    if not have_wrk():
        if script is not None:
            raise RuntimeError("a wrk script needs wrk (Debian package wrk)")
        return await run_load(label, url, headers=headers, concurrency=connections,
                              duration=seconds)
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s",
            "--latency", "--timeout", "10s"]
    if script is not None:
        argv += ["-s", str(script)]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    process = await asyncio.create_subprocess_exec(
        *argv, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed:\n{output.decode(errors='replace')}")
    return parse_wrk(label, output.decode())
