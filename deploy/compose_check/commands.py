"""Running the engine's command-line tools: every call has a time limit, and a failure carries
the end of what the command printed."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

OUTPUT_TAIL_LINES = 25


class CheckError(Exception):
    """Something the check needed did not happen; the message says what, for one line."""


def tail(text: str, lines: int = OUTPUT_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run(
    args: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
    check: bool = True,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion and capture its output."""
    try:
        result = subprocess.run(
            list(args), capture_output=True, text=True, timeout=timeout, env=env,
            input=input_text, cwd=cwd, check=False,
            # Without input, a command that asks for some would wait for the time limit.
            stdin=None if input_text is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as error:
        raise CheckError(f"`{' '.join(args)}` did not finish within {timeout:.0f} s") from error
    except FileNotFoundError as error:
        raise CheckError(f"`{args[0]}` is not installed") from error
    if check and result.returncode != 0:
        raise CheckError(f"`{' '.join(args)}` exited with {result.returncode}:\n"
                         f"{tail(result.stdout + result.stderr)}")
    return result


def run_logged(
    args: Sequence[str],
    log_path: Path,
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin_from: subprocess.Popen[bytes] | None = None,
) -> None:
    """Run a long command (a build, an install) with its output going to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"\n$ {' '.join(args)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            list(args), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
            stdin=stdin_from.stdout if stdin_from and stdin_from.stdout else subprocess.DEVNULL,
        )
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired as error:
            process.kill()
            process.wait()
            raise CheckError(f"`{' '.join(args)}` did not finish within {timeout:.0f} s "
                             f"(log: {log_path})") from error
    if returncode != 0:
        text = log_path.read_text(errors="replace")
        raise CheckError(f"`{' '.join(args)}` exited with {returncode} (log: {log_path}):\n"
                         f"{tail(text)}")


def environment(**extra: str) -> dict[str, str]:
    """The caller's environment plus `extra`."""
    return {**os.environ, **extra}


class Deadline:
    """A point in time that polling loops give up at."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(self._end - time.monotonic(), 0.0)

    def passed(self) -> bool:
        return time.monotonic() >= self._end
