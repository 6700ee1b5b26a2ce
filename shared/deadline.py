"""A request's time budget as one moment (`Deadline`), for a flow whose waits (calls, retries,
polls) must together end before its caller gives up: each wait takes what is left, not its own
full timeout."""

from __future__ import annotations

import time
from dataclasses import dataclass

# A wait is never given less than this (a call with no time at all would fail for nothing).
MIN_WAIT_SECONDS = 0.05


@dataclass(frozen=True)
class Deadline:
    at: float  # time.monotonic()

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def left(self) -> float:
        return max(self.at - time.monotonic(), 0.0)

    def passed(self) -> bool:
        return time.monotonic() >= self.at

    def cap(self, seconds: float) -> float:
        """`seconds`, or what is left if that is less (never below MIN_WAIT_SECONDS)."""
        return max(min(seconds, self.left()), MIN_WAIT_SECONDS)

    def earlier_by(self, seconds: float) -> Deadline:
        """The moment `seconds` before this one: a step's own end, leaving time for the steps
        after it."""
        return Deadline(self.at - seconds)
