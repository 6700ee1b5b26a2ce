"""Where tests find MariaDB and Redis, and how they get a freshly migrated schema."""

from __future__ import annotations

import os
import uuid

from redis import Redis as SyncRedis
from sqlalchemy.engine import make_url

from shared.migrate import upgrade

TEST_MYSQL_URL = os.environ.get("TEST_MYSQL_URL", "mysql+asyncmy://root@127.0.0.1:3306")
# A database number of its own, so a test run never touches the data of a `make run`.
_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# Two suites on one machine at once (two work trees, say) each set their own namespace and Redis
# database, so neither drops the other's schemas: `TEST_NAMESPACE=b TEST_REDIS_URL=.../7 make test`.
_NAMESPACE = os.environ.get("TEST_NAMESPACE", "")
if _NAMESPACE and not _NAMESPACE.isalnum():
    raise RuntimeError(f"TEST_NAMESPACE must be letters and digits, got {_NAMESPACE!r}")
# The suite's worker processes (`make test` runs two) are two such suites: each has its own
# namespace and Redis database. Worker i takes the database 4i below the suite's, clear of those
# the benchmarks use (14, 13, 10) and of make run's (0).
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
WORKER_DATABASE_STEP = 4


def worker_redis_url(url: str, worker: str) -> str:
    """`url` with the Redis database of worker `worker` ("gw0", "gw1", ...; "" for none)."""
    if not worker:
        return url
    index = int(worker.removeprefix("gw"))
    base, _, database = url.rpartition("/")
    number = int(database or "0") - WORKER_DATABASE_STEP * index
    if number < 0:
        raise RuntimeError(f"no Redis database left for test worker {worker} below {url}")
    return f"{base}/{number}"


TEST_REDIS_URL = worker_redis_url(_REDIS_URL, _WORKER)
TEST_NAMESPACE = _NAMESPACE + _WORKER

# New for every run: pub/sub channels are shared by every database of a Redis server.
TEST_PUBSUB_PREFIX = f"test-{TEST_NAMESPACE or 'suite'}-{uuid.uuid4().hex[:8]}:"


def database_url_for_tests(schema: str, suffix: str = "test") -> str:
    name = f"{schema}_{suffix}_{TEST_NAMESPACE}" if TEST_NAMESPACE else f"{schema}_{suffix}"
    url = make_url(TEST_MYSQL_URL).set(database=name)
    return url.render_as_string(hide_password=False)


def fresh_database(service_package: str, schema: str, suffix: str = "test") -> str:
    """Drop the test schema and build it by running the service's Alembic chain (never create_all).

    `suffix` keeps suites apart: the end-to-end system and a service's own tests never share rows.
    """
    url = database_url_for_tests(schema, suffix)
    upgrade(service_package, url, drop_first=True)
    return url


def forget_redis_keys(redis_url: str, prefix: str) -> int:
    """Delete the keys under `prefix` (a service's own namespace, e.g. "social:"), for a test
    that starts a service on a fresh schema: state keyed by row ids must go with the rows."""
    client = SyncRedis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        return int(client.delete(*keys)) if keys else 0
    finally:
        client.close()
