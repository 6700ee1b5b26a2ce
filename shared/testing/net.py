"""Loopback ports and service processes for integration tests over real HTTP."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import uvicorn

# Ports handed out below the kernel's ephemeral range, from here up.
LOWEST_PORT = 10_000
# Where a port handed out is claimed, a file each, and how long a claim holds: far longer than
# any process takes to start and bind it, far shorter than a port stays scarce (a run picks a few
# hundred of the 22,000 or so).
PORT_CLAIMS = Path(tempfile.gettempdir()) / "preorder-test-ports"
CLAIM_SECONDS = 600.0
# This process's own picks, never handed out twice.
_handed_out: set[int] = set()

# The test clients (httpx) keep an idle connection 5 s, uvicorn's default too: a request written
# just as the server closes the connection is lost. Production's client, the gateway, lets go
# before the services do (shared/http.py); in tests the servers outlast the clients instead.
KEEPALIVE_SECONDS = 30


def ephemeral_ports() -> tuple[int, int]:
    """The range the kernel takes outgoing connections' local ports from."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def _claimed(port: int) -> bool:
    """Claims `port` for this process unless this process or another (pytest's other workers,
    a load run) claimed it within CLAIM_SECONDS: a file per port, made only if absent."""
    if port in _handed_out:
        return False
    path = PORT_CLAIMS / str(port)
    try:
        PORT_CLAIMS.mkdir(exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        try:
            if time.time() - path.stat().st_mtime < CLAIM_SECONDS:
                return False
            path.touch()  # a claim of a run long gone
        except OSError:
            return False
    except OSError:
        pass  # nowhere to write claims: this process's own picks stay apart still
    _handed_out.add(port)
    return True


def free_port() -> int:
    """A loopback port nobody listens on, below the ephemeral range, handed out once. A port
    the kernel picks (bind to 0) is in that range, where outgoing connections take their local
    ports: one picked for a process and bound only later may be taken meanwhile. Seen in a
    20,000-buyer make load: a gateway replica's port went to a connection before the replica
    bound it, and its buyers were answered by whatever listened there. And a port is bound
    seconds after it is picked, once its process has started: picked at random, a thousand
    picks repeated one about twenty times, and a fresh-clone make test saw a gateway's port in
    use by the time it bound it. So each pick is claimed (`_claimed`) before it is handed out."""
    low, _ = ephemeral_ports()
    for _ in range(200):
        port = LOWEST_PORT + secrets.randbelow(max(low - LOWEST_PORT, 1))
        if not _claimed(port):
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listens_on(pid: int, port: int) -> bool | None:
    """Whether process `pid` holds a listening TCP socket on `port`; None where /proc cannot
    tell (not Linux)."""
    inodes: set[str] = set()
    try:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except (OSError, IndexError, ValueError):
        return None
    held: set[str] = set()
    for fd in descriptors:
        # A descriptor closed since the listing (a process starting up opens and closes files
        # all the time) holds nothing now.
        with contextlib.suppress(OSError):
            held.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return any(f"socket:[{inode}]" in held for inode in inodes)


class ServiceProcess:
    """One uvicorn process serving `module:factory` on a loopback port, as in production."""

    def __init__(self, name: str, app: str, *, env: Mapping[str, str], port: int | None = None,
                 log_dir: Path, host: str = "127.0.0.1") -> None:
        self.name = name
        self.app = app
        self.host = host
        self.port = port or free_port()
        self.env = {**os.environ, **env}
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ServiceProcess:
        # Appended: after a restart the log still shows what the process did before.
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", self.app, "--host", self.host,
             "--port", str(self.port), "--no-access-log", "--no-proxy-headers",
             "--no-server-header", "--timeout-graceful-shutdown", "3",
             "--timeout-keep-alive", str(KEEPALIVE_SECONDS)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        return self

    # Seven processes importing at once on a shared 2-core machine at load 35 took longer than
    # 30 s to print a line; a process that fails to start is reported at once either way.
    START_TIMEOUT_SECONDS = 120.0

    def wait_healthy(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        self.wait_healthy_at("/healthz", timeout)

    def wait_healthy_at(self, path: str, timeout: float = START_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_path.read_text()[-4000:]}")
            try:
                if httpx.get(f"{self.url}{path}", timeout=1).status_code == 200 \
                        and self._answers_itself():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not healthy in {timeout}s:\n{self.log_path.read_text()[-4000:]}")

    def _answers_itself(self) -> bool:
        """The answer came from this process, not from another that holds the port (this one
        then fails to bind it and exits)."""
        if self.process is None:
            return True
        return listens_on(self.process.pid, self.port) is not False

    def kill(self) -> None:
        """SIGKILL, as a crash: no shutdown runs, nothing is drained."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class ThreadedServer:
    """uvicorn serving an ASGI app from a background thread: real HTTP, configurable in-process."""

    def __init__(self, app: Any, *, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port()
        config = uvicorn.Config(app, host=host, port=self.port, log_level="warning",
                                access_log=False, lifespan="on", timeout_graceful_shutdown=2,
                                proxy_headers=False, server_header=False,
                                timeout_keep_alive=KEEPALIVE_SECONDS)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
