"""The cycle collector's serving settings (shared/heap.py): each check runs in a fresh
interpreter, since what one process froze or set is process-wide."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from shared.heap import (
    BURST_YOUNG_COLLECTION_THRESHOLD,
    FULL_COLLECTION_THRESHOLD,
    MIDDLE_COLLECTION_THRESHOLD,
    YOUNG_COLLECTION_THRESHOLD,
)
from shared.testing.datastores import TEST_REDIS_URL, database_url_for_tests

SERVING = [YOUNG_COLLECTION_THRESHOLD, MIDDLE_COLLECTION_THRESHOLD, FULL_COLLECTION_THRESHOLD]


def run_python(*args: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def test_settling_freezes_what_start_up_left_and_cycles_made_later_are_still_collected() -> None:
    found = run_python("-c", textwrap.dedent("""
        import gc, json, weakref
        from shared import heap
        started_with = list(gc.get_threshold())
        heap.settle("production")

        class Node:
            pass

        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        print(json.dumps({"before": started_with, "threshold": gc.get_threshold(),
                          "frozen": gc.get_freeze_count(), "cycle_collected": gone() is None}))
    """))
    assert found["before"] == [700, 10, 10]
    assert found["threshold"] == SERVING
    assert isinstance(found["frozen"], int)
    assert found["frozen"] > 1000
    assert found["cycle_collected"] is True


@pytest.mark.parametrize("app", ["gateway", "order_service", "stock_service"])
def test_an_app_settles_its_heap_once_started(app: str) -> None:
    found = run_python("-m", "shared.tests.heap_probe", app, "development",
                       database_url_for_tests("heap_probe"), TEST_REDIS_URL)
    threshold = found["threshold"]
    assert isinstance(threshold, list)
    # The young one as set, or as put off if the slow start-up made the first look late.
    assert threshold[0] in (YOUNG_COLLECTION_THRESHOLD, BURST_YOUNG_COLLECTION_THRESHOLD)
    assert threshold[1:] == SERVING[1:]
    assert isinstance(found["frozen"], int)
    assert found["frozen"] > 10_000


def test_apps_under_test_leave_the_collector_as_it_was() -> None:
    # One test interpreter runs app after app: nothing of it may be frozen.
    found = run_python("-m", "shared.tests.heap_probe", "gateway", "test",
                       database_url_for_tests("heap_probe"), TEST_REDIS_URL)
    assert found == {"threshold": [700, 10, 10], "frozen": 0}


# The scripts' common part: `busy(seconds, each)` keeps every turn of the loop 30 ms long for
# that long, calling `each()` once a turn.
BUSY_LOOP = textwrap.dedent("""
    import asyncio, gc, json, time, weakref
    from shared import heap

    async def busy(seconds, each):
        loop = asyncio.get_running_loop()
        end = time.monotonic() + seconds
        done = loop.create_future()
        def turn():
            time.sleep(0.03)
            each()
            if time.monotonic() < end:
                loop.call_soon(turn)
            else:
                done.set_result(None)
        loop.call_soon(turn)
        await done
""")


def test_young_collections_wait_while_the_loop_is_busy_and_run_once_it_has_room() -> None:
    found = run_python("-c", BUSY_LOOP + textwrap.dedent("""
        young_collections = []
        gc.callbacks.append(lambda phase, info: young_collections.append(info["generation"])
                            if phase == "stop" else None)

        class Node:
            pass

        async def main():
            heap.settle("production")
            at_ease = gc.get_threshold()[0]
            await asyncio.sleep(0.2)
            gc.collect()  # the count starts from nothing: the burst's first turns stay below it
            young_collections.clear()
            # A burst: its requests hold many new objects.
            held = []
            await busy(0.6, lambda: held.append([[] for _ in range(5_000)]))
            in_burst = gc.get_threshold()[0]
            collected_in_burst = len(young_collections)
            new_in_burst = sum(len(h) for h in held)
            # The loop has room again, its requests still in flight: still put off (for
            # fewer than twice the calm looks that end a burst with many young objects left).
            await asyncio.sleep(0.4)
            in_flight = gc.get_threshold()[0]
            collected_in_flight = len(young_collections)
            # A cycle left for the collector, then the burst's requests answered.
            a, b = Node(), Node()
            a.other, b.other = b, a
            gone = weakref.ref(a)
            del a, b, held
            deadline = time.monotonic() + 10
            serving = []
            while gone() is not None and time.monotonic() < deadline:
                serving.append([[] for _ in range(1_000)])  # the serving's new objects
                await asyncio.sleep(0.01)
            return {"at_ease": at_ease, "in_burst": in_burst, "new_in_burst": new_in_burst,
                    "collected_in_burst": collected_in_burst, "in_flight": in_flight,
                    "collected_in_flight": collected_in_flight,
                    "after": gc.get_threshold()[0], "cycle_collected": gone() is None}

        print(json.dumps(asyncio.run(main())))
    """))
    assert found["at_ease"] == YOUNG_COLLECTION_THRESHOLD
    assert found["in_burst"] == BURST_YOUNG_COLLECTION_THRESHOLD
    # More new objects than one young collection's threshold, and none ran meanwhile.
    assert isinstance(found["new_in_burst"], int)
    assert found["new_in_burst"] > YOUNG_COLLECTION_THRESHOLD
    assert found["collected_in_burst"] == 0
    assert found["in_flight"] == BURST_YOUNG_COLLECTION_THRESHOLD
    assert found["collected_in_flight"] == 0
    assert found["after"] == YOUNG_COLLECTION_THRESHOLD
    assert found["cycle_collected"] is True


def test_a_loop_busy_for_longer_than_a_burst_collects_as_it_did_without_the_watch() -> None:
    found = run_python("-c", BUSY_LOOP + textwrap.dedent("""
        heap.PUT_OFF_AT_MOST_SECONDS = 1.0  # the bound, shortened for the test

        async def main():
            heap.settle("production")
            await asyncio.sleep(0.2)
            seen = []
            await busy(2.0, lambda: seen.append(gc.get_threshold()[0]))
            changes = [t for i, t in enumerate(seen) if i == 0 or seen[i - 1] != t]
            return {"seen": changes, "last": seen[-1]}

        print(json.dumps(asyncio.run(main())))
    """))
    # Put off at first, then back to the young threshold while the loop was still busy.
    assert found["seen"] == [YOUNG_COLLECTION_THRESHOLD, BURST_YOUNG_COLLECTION_THRESHOLD,
                             YOUNG_COLLECTION_THRESHOLD]
    assert found["last"] == YOUNG_COLLECTION_THRESHOLD
