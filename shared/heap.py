"""The cycle collector's settings for a long-running server process.

At an opening every process holds thousands of live objects per open connection and stream, and
allocates fast. With CPython's defaults (a young collection every 700 allocations, a full one
after ten of the middle generation's) the gateway spent most of its CPU at a 2,000-buyer opening
in full collections, each walking every object the process holds, the import-time ones (modules,
routes, schemas) included, while every request waited: docs/performance.md has the figures.

So, once a process has started: what import and start-up made is moved out of the collector's
sight (`gc.freeze`: it lives as long as the process anyway), and young collections run less
often. Cycles are still collected; they live a little longer between collections.
"""

from __future__ import annotations

import gc

# Allocations (less deallocations) between young collections; CPython's default is 700. A young
# collection walks at most this many objects (about a millisecond), and the full collections
# that follow every hundredth young one become as much rarer.
YOUNG_COLLECTION_THRESHOLD = 20_000
# CPython's own: a middle collection every 10 young ones, a full one every 10 middle ones
# (and only when the long-lived objects grew by a quarter since the last).
MIDDLE_COLLECTION_THRESHOLD = 10
FULL_COLLECTION_THRESHOLD = 10


def settle(environment: str) -> None:
    """Called once the process has started, just before it serves: what start-up left is
    collected, the survivors frozen, and the thresholds set for serving. Not under "test":
    there one interpreter runs app after app, and freezing would keep every earlier test's
    objects out of the collector's reach for the rest of the run."""
    if environment == "test":
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, MIDDLE_COLLECTION_THRESHOLD,
                     FULL_COLLECTION_THRESHOLD)
