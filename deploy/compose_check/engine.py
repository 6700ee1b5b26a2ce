"""A Docker engine to run on: the one that answers, or one this check installs and starts (and
stops again at the end, so it leaves nothing running that it did not find running)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from deploy.compose_check.commands import CheckError, Deadline, environment, run, run_logged, tail

ENGINE_START_SECONDS = 90
APT_SECONDS = 900


def engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return run(["docker", "info"], timeout=30, check=False).returncode == 0


def compose_command() -> list[str] | None:
    """Compose v2 (`docker compose`) when the client has it, else docker-compose 1.x."""
    if shutil.which("docker") and run(["docker", "compose", "version"], timeout=30,
                                      check=False).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose") and run(["docker-compose", "version"], timeout=30,
                                              check=False).returncode == 0:
        return ["docker-compose"]
    return None


class Apt:
    """Debian's packages, installed as the issue's machines need them (root, no prompts)."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._updated = False

    def install(self, *packages: str) -> None:
        if os.geteuid() != 0:
            raise CheckError(f"{', '.join(packages)} missing, and installing them needs root")
        if shutil.which("apt-get") is None:
            raise CheckError(f"{', '.join(packages)} missing, and there is no apt-get to "
                             "install them with")
        env = environment(DEBIAN_FRONTEND="noninteractive")
        if not self._updated:
            run_logged(["apt-get", "update"], self.log_path, timeout=APT_SECONDS, env=env)
            self._updated = True
        run_logged(["apt-get", "install", "-y", *packages], self.log_path, timeout=APT_SECONDS,
                   env=env)


@dataclass
class Engine:
    compose: list[str]
    started: subprocess.Popen[bytes] | None
    notes: list[str]

    def stop(self) -> None:
        """Stop the engine if this check started it."""
        if self.started is None or self.started.poll() is not None:
            return
        self.started.terminate()
        try:
            self.started.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.started.kill()
            self.started.wait()


def ensure_engine(apt: Apt, state_dir: Path) -> Engine:
    notes: list[str] = []
    missing = []
    if shutil.which("dockerd") is None and not engine_answers():
        missing.append("docker.io")
    if compose_command() is None:
        missing.append("docker-compose")
    if missing:
        apt.install(*missing)
        notes.append(f"installed {' '.join(missing)}")
    compose = compose_command()
    if compose is None:
        raise CheckError("neither `docker compose` nor `docker-compose` works")
    started = None
    if not engine_answers():
        started = _start_dockerd(state_dir / "dockerd.log")
        notes.append(f"started dockerd (log: {state_dir / 'dockerd.log'})")
    else:
        notes.append("using the engine that answers")
    return Engine(compose=compose, started=started, notes=notes)


# Without the userland proxy, a connection to a published port on 127.0.0.1 is forwarded by the
# kernel's NAT, not relayed by a docker-proxy process: its relaying reordered an opening's
# requests (make swarm-check with no faults: the gateway's arrival stamps against the crowd's
# sends had 386 adjacent inversions of 628, blocks read in reverse; with the kernel's NAT, none).
DOCKERD_COMMAND = ("dockerd", "--userland-proxy=false")


def _start_dockerd(log_path: Path) -> subprocess.Popen[bytes]:
    if os.geteuid() != 0:
        raise CheckError("no Docker engine answers, and starting dockerd needs root")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        # A session of its own: dockerd must not get the terminal's Ctrl-C before the check has
        # taken the stack down; the check stops it itself at the end.
        process = subprocess.Popen(DOCKERD_COMMAND, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = Deadline(ENGINE_START_SECONDS)
    while not deadline.passed():
        if process.poll() is not None:
            raise CheckError(f"dockerd exited with {process.returncode}:\n"
                             f"{tail(log_path.read_text(errors='replace'))}")
        if engine_answers():
            return process
        time.sleep(1)
    process.terminate()
    raise CheckError(f"dockerd did not answer within {ENGINE_START_SECONDS} s (log: {log_path})")
