"""A Redis and a MariaDB of the chaos run's own: private ports, sockets and data directories
under the run's directory, started, killed with SIGKILL and started again by the run alone. The
machine's servers (3306, 6379) are never touched.

- Redis keeps an append-only file fsynced before every reply (`appendfsync always`), so a kill
  loses no write any client was told about; it comes back with what it had.
- MariaDB is InnoDB with its default durable commit; a kill is a crash, and the restart is
  InnoDB's crash recovery.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from shared.testing.net import free_port

MARIADBD = Path("/usr/sbin/mariadbd")
INSTALL_DB = "mariadb-install-db"
START_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 10.0


class DatastoreError(RuntimeError):
    pass


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class PrivateServer:
    """One server process on a loopback port of its own; subclasses say how it starts."""

    name: str
    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        return _answers(self.port)

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        # Appended: a restart's output follows the crash it recovers from.
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DatastoreError(f"{self.name} exited with {self.process.returncode}; "
                                     f"see {self.log_path}")
            if self.ready():
                return
            time.sleep(0.1)
        raise DatastoreError(f"{self.name} did not answer on port {self.port} in {timeout} s")

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing gets flushed that was not already."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class PrivateRedis(PrivateServer):
    def command(self) -> list[str]:
        return ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
                "--dir", str(self.directory), "--appendonly", "yes",
                "--appendfsync", "always", "--save", "", "--protected-mode", "yes",
                "--daemonize", "no", "--maxclients", "2000"]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def forget_everything(self) -> None:
        """After a kill: its files gone, so it starts empty (a failover to a replica that had
        nothing, or a FLUSHALL)."""
        for path in self.directory.iterdir():
            if path.name.startswith("appendonly") or path.suffix == ".rdb":
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()


@dataclass
class PrivateMariaDB(PrivateServer):
    # Run as root (with --user=root) when this process is root, else as whoever runs it.
    socket_path: Path = field(init=False)

    def __post_init__(self) -> None:
        # A UNIX socket path is limited to about 100 bytes: a short one of its own under /tmp.
        self.socket_path = Path("/tmp") / f"chaos-mariadb-{self.port}.sock"  # noqa: S108

    @property
    def datadir(self) -> Path:
        return self.directory / "data"

    @property
    def url(self) -> str:
        return f"mysql+asyncmy://root@127.0.0.1:{self.port}"

    def install(self) -> None:
        """A fresh data directory: the system tables and a root without a password, on
        loopback only."""
        if not MARIADBD.exists() or shutil.which(INSTALL_DB) is None:
            raise DatastoreError(f"{MARIADBD} and {INSTALL_DB} are needed (Debian: apt-get "
                                 "install mariadb-server)")
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            subprocess.run([INSTALL_DB, "--no-defaults", f"--datadir={self.datadir}",
                            *self._user(), "--auth-root-authentication-method=normal",
                            "--skip-test-db"], stdout=log, stderr=subprocess.STDOUT,
                           check=True, timeout=START_TIMEOUT_SECONDS)

    def _user(self) -> list[str]:
        return ["--user=root"] if os.geteuid() == 0 else []

    def command(self) -> list[str]:
        return [str(MARIADBD), "--no-defaults", f"--datadir={self.datadir}", *self._user(),
                f"--port={self.port}", "--bind-address=127.0.0.1",
                f"--socket={self.socket_path}", f"--pid-file={self.directory / 'mariadbd.pid'}",
                "--skip-name-resolve", "--innodb-buffer-pool-size=64M",
                # The default redo log is 96 MB: a run's directory would be mostly that.
                "--innodb-log-file-size=16M",
                "--max-connections=400", "--skip-log-bin"]

    def forget_data(self) -> None:
        """The data directory removed (after a run that passed: nothing in it to look at)."""
        if self.process is None or self.process.poll() is not None:
            shutil.rmtree(self.datadir, ignore_errors=True)

    def ready(self) -> bool:
        # The port opens before InnoDB's recovery is over; a connection proves it is done.
        if not _answers(self.port):
            return False
        mariadb = shutil.which("mariadb") or shutil.which("mysql")
        if mariadb is None:
            return True
        probe = subprocess.run([mariadb, "--no-defaults", "-h127.0.0.1", f"-P{self.port}",
                                "-uroot", "-e", "SELECT 1"], capture_output=True, timeout=10,
                               check=False)
        return probe.returncode == 0
