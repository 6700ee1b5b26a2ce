"""Schema names from configuration are checked before they reach SQL, and two runs of one chain at
once take turns on the schema's named lock instead of racing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from shared.migrate import at_head, ensure_database, migration_lock_name
from shared.testing.datastores import TEST_MYSQL_URL, database_url_for_tests
from shared.testing.net import free_port

# A real chain with several revisions, so an unguarded second run would meet half-made tables.
PACKAGE = "stock_service"
SCHEMA = "preorder_stock"
SECONDS = 120


@pytest.mark.parametrize("name", ["bad`name", "x; DROP DATABASE mysql", "a-b", ""])
async def test_unsafe_schema_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="schema name"):
        await ensure_database(f"mysql+asyncmy://root@127.0.0.1:3306/{name}")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def forward_to_mysql_after(delay: float, port: int) -> asyncio.Server:
    """From `delay` seconds on, `port` leads to the test MySQL: a server that comes up late."""
    mysql = make_url(TEST_MYSQL_URL)

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            mysql.host, mysql.port or 3306)
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    await asyncio.sleep(delay)
    return await asyncio.start_server(forward, "127.0.0.1", port)


async def test_a_run_waits_for_a_server_not_up_yet_and_not_for_a_wrong_password() -> None:
    """A container often starts before the database listens (or its name resolves): the run
    waits for it, within a bound, instead of exiting. A server that answers and refuses is
    not waited for."""
    port = free_port()
    url = make_url(database_url_for_tests(SCHEMA, "late")).set(host="127.0.0.1", port=port)
    opening = asyncio.create_task(forward_to_mysql_after(1.5, port))
    try:
        await ensure_database(url.render_as_string(hide_password=False),
                              server_wait_seconds=30)
    finally:
        server = await opening
    try:
        refused = url.set(username="nobody-here", password="wrong")
        started = time.monotonic()
        with pytest.raises(DBAPIError, match=r"1045|Access denied"):
            await ensure_database(refused.render_as_string(hide_password=False),
                                  server_wait_seconds=30)
        assert time.monotonic() - started < 10
    finally:
        server.close()
    with pytest.raises(DBAPIError, match=r"2003|Can't connect"):
        await ensure_database(url.render_as_string(hide_password=False), server_wait_seconds=0)


def start_upgrade(database_url: str) -> subprocess.Popen[str]:
    """An upgrade in a process of its own, as a replica or a Job would run it."""
    code = f"from shared.migrate import upgrade; upgrade({PACKAGE!r}, {database_url!r})"
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


async def finished(process: subprocess.Popen[str]) -> tuple[int, str]:
    output, _ = await asyncio.to_thread(process.communicate, timeout=SECONDS)
    return process.returncode, output


async def tables_in(conn: AsyncConnection, schema: str) -> list[str]:
    rows = await conn.execute(text("SELECT table_name FROM information_schema.tables "
                                   "WHERE table_schema = :schema"), {"schema": schema})
    return [r[0] for r in rows]


@pytest.fixture
async def empty_schema() -> str:
    url = database_url_for_tests(SCHEMA, "lock")
    await ensure_database(url, drop_first=True)
    return url


async def test_two_upgrades_at_once_both_succeed_and_leave_the_schema_at_head(
        empty_schema: str) -> None:
    first, second = start_upgrade(empty_schema), start_upgrade(empty_schema)
    results = await asyncio.gather(finished(first), finished(second))
    assert [code for code, _ in results] == [0, 0], results
    assert await at_head(PACKAGE, empty_schema)


async def test_an_upgrade_waits_while_another_holds_the_schemas_lock(empty_schema: str) -> None:
    schema = str(make_url(empty_schema).database)
    name = migration_lock_name(schema)
    engine = create_async_engine(TEST_MYSQL_URL)
    try:
        async with engine.connect() as holder:
            assert (await holder.execute(text("SELECT GET_LOCK(:n, 0)"), {"n": name})).scalar() == 1
            upgrade = start_upgrade(empty_schema)
            try:
                # Until the upgrade asks for the lock itself (MySQL shows the waiting query).
                deadline = time.monotonic() + SECONDS
                while not (await holder.execute(
                        text("SELECT COUNT(*) FROM information_schema.processlist "
                             "WHERE info LIKE 'SELECT GET_LOCK%' AND LOCATE(:n, info) > 0 "
                             "AND id <> CONNECTION_ID()"), {"n": name})).scalar():
                    assert upgrade.poll() is None, upgrade.communicate()
                    assert time.monotonic() < deadline, "the upgrade never asked for the lock"
                    await asyncio.sleep(0.1)
                assert await tables_in(holder, schema) == []
                assert not await at_head(PACKAGE, empty_schema)
            finally:
                await holder.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": name})
            code, output = await finished(upgrade)
        assert code == 0, output
        assert await at_head(PACKAGE, empty_schema)
    finally:
        await engine.dispose()
