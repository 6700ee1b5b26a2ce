"""A 3-node Redis Cluster of a test's own on loopback: three `redis-server --cluster-enabled yes`
processes on free ports, joined by `redis-cli --cluster create`, stopped (and their files removed)
when the test is done. Nothing of the machine's own Redis is touched."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.testing.net import free_port

NODES = 3
START_SECONDS = 30


class RedisClusterUnavailable(RuntimeError):
    pass


def _free_cluster_port() -> int:
    """A port whose cluster bus (port + 10000) is free too."""
    for _ in range(100):
        port = free_port()
        if port + 10000 < 65536:
            try:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
            return port
    raise RedisClusterUnavailable("no free port pair for a cluster node")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RedisClusterUnavailable(f"{name} is not installed (Debian's redis-server package)")
    return path


def _cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_tool("redis-cli"), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


@contextmanager
def redis_cluster() -> Iterator[str]:
    """Yields the URL of one node (`redis://127.0.0.1:PORT`); a cluster client finds the rest."""
    server = _tool("redis-server")
    workdir = Path(tempfile.mkdtemp(prefix="redis-cluster-"))
    ports = [_free_cluster_port() for _ in range(NODES)]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            node_dir = workdir / str(port)
            node_dir.mkdir()
            processes.append(subprocess.Popen(
                [server, "--port", str(port), "--bind", "127.0.0.1",
                 "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                 "--cluster-node-timeout", "2000", "--dir", str(node_dir),
                 "--save", "", "--appendonly", "no", "--logfile", str(node_dir / "redis.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + START_SECONDS
        for port in ports:
            while _cli("-p", str(port), "ping").stdout.strip() != "PONG":
                if time.monotonic() > deadline:
                    raise RedisClusterUnavailable(f"node on {port} did not start")
                time.sleep(0.05)
        created = _cli("--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                       "--cluster-replicas", "0", "--cluster-yes", timeout=60)
        if created.returncode != 0:
            raise RedisClusterUnavailable(f"redis-cli --cluster create: {created.stdout}"
                                          f"{created.stderr}")
        # Every node must agree that all slots are served before a client connects.
        for port in ports:
            while "cluster_state:ok" not in _cli("-p", str(port), "cluster", "info").stdout:
                if time.monotonic() > deadline:
                    raise RedisClusterUnavailable(f"node on {port} never reached cluster_state:ok")
                time.sleep(0.1)
        yield f"redis://127.0.0.1:{ports[0]}"
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(workdir, ignore_errors=True)
