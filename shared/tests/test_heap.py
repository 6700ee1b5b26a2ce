"""The cycle collector's serving settings (shared/heap.py): each check runs in a fresh
interpreter, since what one process froze or set is process-wide."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from shared.heap import (
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
    assert found["threshold"] == SERVING
    assert isinstance(found["frozen"], int)
    assert found["frozen"] > 10_000


def test_apps_under_test_leave_the_collector_as_it_was() -> None:
    # One test interpreter runs app after app: nothing of it may be frozen.
    found = run_python("-m", "shared.tests.heap_probe", "gateway", "test",
                       database_url_for_tests("heap_probe"), TEST_REDIS_URL)
    assert found == {"threshold": [700, 10, 10], "frozen": 0}
