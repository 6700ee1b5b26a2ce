"""The cycle collector's settings for a long-running server process.

At an opening every process holds thousands of live objects per open connection and stream, and
allocates fast. With CPython's defaults (a young collection every 700 allocations, a full one
after ten of the middle generation's) the gateway spent most of its CPU at a 2,000-buyer opening
in full collections, each walking every object the process holds, the import-time ones (modules,
routes, schemas) included, while every request waited: docs/performance.md has the figures.

So, once a process has started: what import and start-up made is moved out of the collector's
sight (`gc.freeze`: it lives as long as the process anyway), and young collections run less
often. Cycles are still collected; they live a little longer between collections.

And none runs in the middle of a burst if it can wait (`BurstWatch`). What a young collection
walks at an opening is the requests in flight: each holds a hundred or so objects until it is
answered, and refcounting frees them then. Collected while the loop was busy, they were walked
(and none of them freed: every one was still in use), while every request waited: in one `make
load` the gateway spent about a third of the opening's first second in collections that found
nothing (a young one of 73 ms, a middle one of 159 ms). Put off until the loop has room, most of
them are gone by then and are never walked at all.
"""

from __future__ import annotations

import asyncio
import gc

# Allocations (less deallocations) between young collections; CPython's default is 700. A young
# collection walks at most this many objects (about a millisecond), and the full collections
# that follow every hundredth young one become as much rarer.
YOUNG_COLLECTION_THRESHOLD = 20_000
# CPython's own: a middle collection every 10 young ones, a full one every 10 middle ones
# (and only when the long-lived objects grew by a quarter since the last).
MIDDLE_COLLECTION_THRESHOLD = 10
FULL_COLLECTION_THRESHOLD = 10
SERVING_THRESHOLDS = (YOUNG_COLLECTION_THRESHOLD, MIDDLE_COLLECTION_THRESHOLD,
                      FULL_COLLECTION_THRESHOLD)
# While the loop is busy a young collection waits until this many objects are new: far more than
# an opening's requests in flight hold (2,000 requests at about a hundred objects each), and
# still a bound on what a collection that can wait no longer walks.
BURST_YOUNG_COLLECTION_THRESHOLD = 25 * YOUNG_COLLECTION_THRESHOLD
# How often the loop is looked at, and how late that look may come with the loop still counted
# as having room: a loop that serves at its ease runs a timer within a millisecond or two, one
# in a burst runs it after a turn of many requests. A burst is over once this many looks in a
# row came on time (a busy loop has short turns too: one look on time said little, and the
# collection it let run walked the burst's requests still in flight).
LOOK_EVERY_SECONDS = 0.05
BUSY_AFTER_SECONDS = 0.01
CALM_LOOKS = 6
# An opening's burst is over within seconds. A loop busy for longer is overloaded, not in a
# burst: putting collections off then only makes each one longer (the survivors of young
# collections of 500,000 objects pile up for the middle one), so after this long they run as
# they would without the watch, until the loop is calm again.
PUT_OFF_AT_MOST_SECONDS = 3.0


def settle(environment: str) -> None:
    """Called once the process has started, just before it serves: what start-up left is
    collected, the survivors frozen, and the thresholds set for serving; from within a running
    loop, collections are put off while it is busy too (`BurstWatch`). Not under "test": there
    one interpreter runs app after app, and freezing would keep every earlier test's objects out
    of the collector's reach for the rest of the run."""
    if environment == "test":
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVING_THRESHOLDS)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    BurstWatch(loop).start()


class BurstWatch:
    """Puts young collections off while the loop is busy: the collector's own threshold is
    raised to BURST_YOUNG_COLLECTION_THRESHOLD when a look runs late, and set back once
    CALM_LOOKS in a row ran on time, or once the loop has been busy PUT_OFF_AT_MOST_SECONDS
    (CPython then collects at the next allocation, each generation by its own rules).
    Process-wide, as the collector is: one per process."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.putting_off = False
        self._busy_since: float | None = None
        self._calm = 0
        self._due = 0.0

    def start(self) -> None:
        self._due = self.loop.time() + LOOK_EVERY_SECONDS
        self.loop.call_at(self._due, self._look)

    def _look(self) -> None:
        now = self.loop.time()
        if now - self._due > BUSY_AFTER_SECONDS:
            self._calm = 0
            if self._busy_since is None:
                self._busy_since = now
            self._put_off(now - self._busy_since < PUT_OFF_AT_MOST_SECONDS)
        else:
            self._calm += 1
            if self._calm >= CALM_LOOKS:
                self._busy_since = None
                self._put_off(False)
        self._due = now + LOOK_EVERY_SECONDS
        self.loop.call_at(self._due, self._look)

    def _put_off(self, put_off: bool) -> None:
        if put_off != self.putting_off:
            self.putting_off = put_off
            young = BURST_YOUNG_COLLECTION_THRESHOLD if put_off else YOUNG_COLLECTION_THRESHOLD
            gc.set_threshold(young, MIDDLE_COLLECTION_THRESHOLD, FULL_COLLECTION_THRESHOLD)
