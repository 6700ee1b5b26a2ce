"""`make test`'s set-up: the MariaDB and Redis the tests use answer before pytest starts.

The tests' datastores are TEST_MYSQL_URL and TEST_REDIS_URL (shared.testing.datastores), not the
services' own settings; they are found or started exactly as `make run` finds or starts its own
(deploy.run_local.ensure_datastores: reuse, else Docker, else the OS packages as root).
"""

from __future__ import annotations

import asyncio
import sys

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from deploy.run_local import Datastores, LogStream, SetupError, ensure_datastores, mysql_server
from shared.testing.datastores import TEST_MYSQL_URL, TEST_REDIS_URL

# The end-to-end tests start all seven apps, each with its pools: more than MariaDB's default
# of 151 connections. Raised only, never lowered, and only where the test user may.
MIN_MAX_CONNECTIONS = 500


def datastores_for_tests(mysql_url: str = TEST_MYSQL_URL, redis_url: str = TEST_REDIS_URL) -> Datastores:
    """The server of TEST_MYSQL_URL (its schemas are made by the tests) and TEST_REDIS_URL."""
    return Datastores((mysql_server(mysql_url),), (redis_url,))


async def raise_max_connections(log: LogStream, server_url: str) -> None:
    engine = create_async_engine(server_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            await conn.execute(text(
                f"SET GLOBAL max_connections = GREATEST(@@max_connections, {MIN_MAX_CONNECTIONS})"))
    except SQLAlchemyError as error:
        # A server the tests may not reconfigure still runs the suite; only the end-to-end
        # tests may then run short of connections, and this line says why.
        log.run(f"could not raise max_connections to {MIN_MAX_CONNECTIONS}: {error.__class__.__name__}")
    finally:
        await engine.dispose()


async def prepare(log: LogStream) -> None:
    stores = datastores_for_tests()
    await ensure_datastores(log, stores)
    await raise_max_connections(log, stores.mysql_servers[0])


def main() -> None:
    log = LogStream(sys.stdout)
    try:
        asyncio.run(prepare(log))
    except SetupError as error:
        log.run(f"error: {error}")
        sys.exit(1)


if __name__ == "__main__":
    main()
