"""Each of the suite's worker processes is a suite of its own: its own Redis database."""

from __future__ import annotations

import pytest

from shared.testing.datastores import worker_redis_url


def test_without_workers_the_suites_database_is_used() -> None:
    assert worker_redis_url("redis://127.0.0.1:6379/15", "") == "redis://127.0.0.1:6379/15"


def test_each_worker_takes_a_database_of_its_own_clear_of_the_benchmarks() -> None:
    databases = [worker_redis_url("redis://:pw@127.0.0.1:6379/15", f"gw{index}")
                 for index in range(4)]
    assert databases == [f"redis://:pw@127.0.0.1:6379/{n}" for n in (15, 11, 7, 3)]


def test_a_worker_with_no_database_left_is_refused_not_sent_to_another_suites() -> None:
    with pytest.raises(RuntimeError, match="no Redis database left"):
        worker_redis_url("redis://127.0.0.1:6379/3", "gw1")
