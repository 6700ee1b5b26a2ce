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
import time

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
BURST_THRESHOLDS = (BURST_YOUNG_COLLECTION_THRESHOLD, MIDDLE_COLLECTION_THRESHOLD,
                    FULL_COLLECTION_THRESHOLD)
# How often the loop is looked at, and how late that look may come with the loop still counted
# as having room: a loop that serves at its ease runs a timer within a millisecond or two, one
# in a burst runs it after a turn of many requests. A burst is over once this many looks in a
# row came on time and the young objects are few again: a loop with room may still have the
# burst's requests in flight (the gateway waiting for order_service's answers), and a
# collection let run then walked them all (225 and 305 ms in two `make load` runs).
LOOK_EVERY_SECONDS = 0.05
BUSY_AFTER_SECONDS = 0.01
CALM_LOOKS = 6
# A loop that runs many short turns is busy too, with its timers on time: busy as well when its
# thread used this share of the time since the last look (the gateway at an opening's first
# 300 ms ran its looks on time, and a young collection of about 100 ms ran in the burst).
BUSY_CPU_SHARE = 0.5
# A loop put off for longer is overloaded, not in a burst: putting collections off then only
# makes each one longer (the survivors of young collections of 500,000 objects pile up for the
# middle one), so after this long they run as they would without the watch, until the loop is
# calm again.
PUT_OFF_AT_MOST_SECONDS = 10.0


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
    raised to BURST_YOUNG_COLLECTION_THRESHOLD when a look finds it busy, and set back once
    CALM_LOOKS in a row found it calm with fewer than YOUNG_COLLECTION_THRESHOLD young objects
    left (twice as many, whatever is left), or once PUT_OFF_AT_MOST_SECONDS have passed
    (CPython then collects at the next allocation past the threshold, each generation by its
    own rules; after the latter, not put off again until the loop is calm). Process-wide, as
    the collector is: one per process."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._since: float | None = None  # when the collections were put off
        self._spent = False  # put off for the longest: not again before the loop is calm
        self._calm = 0
        self._due = 0.0
        self._cpu = 0.0  # the loop thread's CPU time at the last look, and when it ran
        self._looked = 0.0

    def start(self) -> None:
        self._looked, self._cpu = self.loop.time(), time.thread_time()
        self._due = self._looked + LOOK_EVERY_SECONDS
        self.loop.call_at(self._due, self._look)

    def _look(self) -> None:
        now, cpu = self.loop.time(), time.thread_time()
        busy_share = (cpu - self._cpu) / max(now - self._looked, LOOK_EVERY_SECONDS)
        busy = now - self._due > BUSY_AFTER_SECONDS or busy_share >= BUSY_CPU_SHARE
        self._looked, self._cpu = now, cpu
        self._calm = 0 if busy else self._calm + 1
        calm = self._calm >= CALM_LOOKS
        if self._since is None:
            if busy and not self._spent:
                self._since = now
                gc.set_threshold(*BURST_THRESHOLDS)
            elif calm:
                self._spent = False
        else:
            # Calm twice as long with the young objects still many: they are not the burst's
            # (streams it opened, caches), and a collection now, with room, beats one later.
            over = calm and (gc.get_count()[0] < YOUNG_COLLECTION_THRESHOLD
                             or self._calm >= 2 * CALM_LOOKS)
            spent = now - self._since >= PUT_OFF_AT_MOST_SECONDS
            if over or spent:
                self._since = None
                self._spent = spent and not over
                gc.set_threshold(*SERVING_THRESHOLDS)
        self._due = now + LOOK_EVERY_SECONDS
        self.loop.call_at(self._due, self._look)
