"""ReadSession (real MariaDB): Core statements compiled once and run in autocommit, with the
column types SQLAlchemy would give, no transaction left open, and dropped connections survived."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime

import asyncmy
import asyncmy.errors
import pytest
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects.mysql import DATETIME
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.errors import DatabaseUnavailable
from shared.migrate import ensure_database
from shared.reads import ReadSession, is_disconnect
from shared.testing.datastores import database_url_for_tests

notes = Table(
    "notes", MetaData(),
    Column("id", BigInteger, primary_key=True),
    Column("body", String(50)),
    Column("pinned", Boolean, nullable=False),
    Column("created_at", DATETIME(fsp=6), nullable=False),
)
NOTE_BY_ID = select(notes.c.id, notes.c.body, notes.c.pinned,
                    notes.c.created_at).where(notes.c.id == bindparam("note_id"))
WRITTEN = datetime(2026, 11, 25, 9, 30, 15, 123456)


@pytest.fixture(scope="module")
async def url() -> str:
    url = database_url_for_tests("preorder_shared_reads")
    await ensure_database(url, drop_first=True)
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(notes.metadata.create_all)
        await conn.execute(notes.insert(), [
            {"id": 1, "body": "첫 메모", "pinned": True, "created_at": WRITTEN},
            {"id": 2, "body": None, "pinned": False, "created_at": WRITTEN},
        ])
    await engine.dispose()
    return url


@pytest.fixture
async def reads(url: str) -> AsyncIterator[ReadSession]:
    session = await ReadSession.open(url, pool_size=2)
    yield session
    await session.close()


async def test_rows_come_back_typed_as_sqlalchemy_would_type_them(reads: ReadSession) -> None:
    assert (await reads.execute(NOTE_BY_ID, {"note_id": 1})).first() == {
        "id": 1, "body": "첫 메모", "pinned": True, "created_at": WRITTEN}
    second = (await reads.execute(NOTE_BY_ID, {"note_id": 2})).first()
    assert second is not None
    assert second["body"] is None
    assert second["pinned"] is False
    assert (await reads.execute(NOTE_BY_ID, {"note_id": 3})).first() is None


async def test_parameters_are_bound_never_spliced(reads: ReadSession) -> None:
    by_body = select(notes.c.id).where(notes.c.body == bindparam("body"))
    assert (await reads.execute(by_body, {"body": "x' OR '1'='1"})).all() == []
    assert (await reads.execute(by_body, {"body": "첫 메모"})).scalar() == 1


async def test_values_written_into_the_statement_are_bound_too(reads: ReadSession) -> None:
    pinned = select(notes.c.id).where(notes.c.pinned.is_(True), notes.c.id < 100)
    assert (await reads.execute(pinned)).all() == [{"id": 1}]


async def test_a_missing_parameter_is_refused_before_any_query(reads: ReadSession) -> None:
    with pytest.raises(ValueError, match="note_id"):
        await reads.execute(NOTE_BY_ID, {})


async def test_expanding_parameters_are_refused(reads: ReadSession) -> None:
    in_list = select(notes.c.id).where(notes.c.id.in_(bindparam("ids", expanding=True)))
    with pytest.raises(ValueError, match="expanding"):
        await reads.execute(in_list, {"ids": [1, 2]})


async def test_a_read_runs_in_autocommit_and_leaves_no_transaction(reads: ReadSession) -> None:
    state = select(literal_column("@@autocommit", Integer).label("autocommit"),
                   literal_column("@@in_transaction", Integer).label("in_transaction"))
    assert (await reads.execute(state)).first() == {"autocommit": 1, "in_transaction": 0}


async def test_a_connection_the_server_killed_is_not_an_error(url: str, reads: ReadSession) -> None:
    connection_id = select(literal_column("CONNECTION_ID()", Integer).label("id"))
    before = (await reads.execute(connection_id)).scalar()
    admin: AsyncEngine = create_async_engine(url)
    async with admin.begin() as conn:
        await conn.execute(text(f"KILL {int(before)}"))
    await admin.dispose()
    assert (await reads.execute(NOTE_BY_ID, {"note_id": 1})).first() is not None
    assert (await reads.execute(connection_id)).scalar() != before


async def test_a_connection_killed_under_its_statement_is_read_again(
        url: str, reads: ReadSession) -> None:
    slow = select(literal_column("SLEEP(0.6)", Integer).label("slept"),
                  literal_column("CONNECTION_ID()", Integer).label("id"))
    read = asyncio.create_task(reads.execute(slow))
    admin: AsyncEngine = create_async_engine(url)
    try:
        for _ in range(50):
            await asyncio.sleep(0.05)
            async with admin.begin() as conn:
                running = (await conn.execute(text(
                    "SELECT id FROM information_schema.processlist "
                    "WHERE db = DATABASE() AND info LIKE 'SELECT SLEEP(0.6)%'"))).scalars().all()
                if running:
                    await conn.execute(text(f"KILL {int(running[0])}"))
                    break
        assert running, "the slow read never showed in the process list"
        answer = (await read).first()
    finally:
        await admin.dispose()
    assert answer is not None
    assert answer["slept"] == 0
    assert answer["id"] != running[0]


@pytest.mark.parametrize(("error", "dropped"), [
    (asyncmy.errors.OperationalError(2013, "Lost connection to server during query"), True),
    (asyncmy.errors.OperationalError(2006, "MySQL server has gone away"), True),
    (asyncmy.errors.OperationalError(1927, "Connection was killed"), True),
    (asyncmy.errors.InterfaceError(0, ""), True),
    (asyncmy.errors.OperationalError(2003, "Can't connect"), True),
    (ConnectionResetError(), True),
    (asyncmy.errors.ProgrammingError(1064, "You have an error in your SQL syntax"), False),
    (asyncmy.errors.OperationalError(1205, "Lock wait timeout exceeded"), False),
    (ValueError("not the driver's"), False),
])
def test_dropped_connections_are_told_from_other_errors(error: BaseException,
                                                        dropped: bool) -> None:
    assert is_disconnect(error) is dropped


async def test_each_statement_is_compiled_once(reads: ReadSession) -> None:
    assert reads.compiled(NOTE_BY_ID) is reads.compiled(NOTE_BY_ID)


async def test_an_unreachable_database_is_a_503_problem_not_a_crash() -> None:
    reads = await ReadSession.open("mysql+asyncmy://root@127.0.0.1:9/nothing", pool_size=1)
    try:
        with pytest.raises(DatabaseUnavailable) as raised:
            await reads.execute(NOTE_BY_ID, {"note_id": 1})
    finally:
        await reads.close()
    assert raised.value.status == 503
    assert raised.value.headers == {"Retry-After": "1"}


async def test_a_server_refusing_the_connection_is_a_503_as_for_the_engine(url: str) -> None:
    """A server that answers but will not take the connection (too many connections, the
    user's limit, shutting down) raised the driver's own OperationalError: a 500 where the
    engine's reads and writes answer 503. The paying request reads its payment here, after
    the charge."""
    user = f"reads_limited_{asyncio.get_running_loop().time():.0f}"[:32]
    admin = create_async_engine(url)
    async with admin.begin() as conn:
        await conn.execute(text(f"CREATE USER '{user}'@'%' WITH MAX_USER_CONNECTIONS 1"))
        await conn.execute(text(f"GRANT SELECT ON *.* TO '{user}'@'%'"))
    limited = url.replace("root@", f"{user}@", 1)
    holding = await asyncmy.connect(host="127.0.0.1", port=int(url.split(":")[-1].split("/")[0]),
                                    user=user, password="")
    reads = await ReadSession.open(limited, pool_size=1)
    try:
        with pytest.raises(DatabaseUnavailable):
            await reads.execute(NOTE_BY_ID, {"note_id": 1})
    finally:
        await reads.close()
        holding.close()
        async with admin.begin() as conn:
            await conn.execute(text(f"DROP USER '{user}'@'%'"))
        await admin.dispose()


async def test_a_read_waits_for_a_connection_only_so_long(url: str) -> None:
    """Every connection busy past the wait: a 503, as the engine's pool answers after its
    timeout, not a wait with no end (the settle and payment reads share this pool with the
    public GETs now)."""
    reads = await ReadSession.open(url, pool_size=1, wait_seconds=0.2)
    slow = select(literal_column("SLEEP(1)", Integer).label("slept"))
    try:
        busy = asyncio.ensure_future(reads.execute(slow))
        await asyncio.sleep(0.05)
        with pytest.raises(DatabaseUnavailable):
            await reads.execute(NOTE_BY_ID, {"note_id": 1})
        await busy
        # The turn given up is not lost: the pool still serves.
        assert (await reads.execute(NOTE_BY_ID, {"note_id": 1})).first() is not None
    finally:
        await reads.close()
