"""The request session commits once on success, rolls back on error, runs after-commit work only
once the rows are durable, and a failure record written in its own transaction survives the
request's rollback without keeping anything else (real MariaDB)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Integer, String, event, select, text, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import (
    AfterCommitTasks,
    Transactions,
    create_engine,
    create_sessionmaker,
    in_own_transaction,
    ping_connections_idle_for,
    run_after_commit,
    session_scope,
)
from shared.errors import Conflict, install_error_handlers
from shared.migrate import ensure_database
from shared.testing.datastores import database_url_for_tests


@pytest.fixture(scope="module")
async def sessions() -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    url = database_url_for_tests("preorder_shared")
    await ensure_database(url, drop_first=True)
    engine = create_engine(url, pool_size=2)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE notes (id INT PRIMARY KEY, body VARCHAR(20))"))
    yield create_sessionmaker(engine)
    await engine.dispose()


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    body: Mapped[str] = mapped_column(String(20))


async def count(sessions: async_sessionmaker[AsyncSession], note_id: int) -> int:
    async with sessions() as session:
        return int((await session.execute(
            text("SELECT COUNT(*) FROM notes WHERE id = :id"), {"id": note_id})).scalar_one())


async def insert(session: AsyncSession, note_id: int) -> None:
    await session.execute(text("INSERT INTO notes VALUES (:id, 'x')"), {"id": note_id})


async def test_commits_on_success_then_runs_after_commit(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    tasks = AfterCommitTasks()
    seen: list[int] = []

    async def after() -> None:
        seen.append(await count(sessions, 1))  # the row must already be visible

    async for session in session_scope(sessions, tasks):
        await insert(session, 1)
        run_after_commit(session, after)
    await tasks.drain()
    assert seen == [1]


async def test_rolls_back_on_error_and_skips_after_commit(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    tasks = AfterCommitTasks()
    ran: list[bool] = []

    async def after() -> None:
        ran.append(True)

    scope = session_scope(sessions, tasks)
    session = await anext(scope)
    await insert(session, 2)
    run_after_commit(session, after)
    with pytest.raises(Conflict):
        await scope.athrow(Conflict("the handler answered with a problem"))
    await tasks.drain()  # had it been scheduled, it would have run by now
    assert await count(sessions, 2) == 0
    assert ran == []


async def test_own_transaction_keeps_only_what_it_writes(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    scope = session_scope(sessions, AfterCommitTasks())
    session = await anext(scope)
    await insert(session, 3)  # the request's own work, flushed but not committed

    async def record_failure(own: AsyncSession) -> str:
        await insert(own, 4)
        return "recorded"

    assert await in_own_transaction(session, record_failure) == "recorded"
    assert await count(sessions, 4) == 1  # committed at once, before the request ends
    with pytest.raises(Conflict):
        await scope.athrow(Conflict("the request still fails"))
    assert await count(sessions, 4) == 1
    assert await count(sessions, 3) == 0


async def test_own_transaction_rolls_back_when_its_write_fails(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        async def half_done(own: AsyncSession) -> None:
            await insert(own, 5)
            raise RuntimeError("a bug halfway")

        with pytest.raises(RuntimeError):
            await in_own_transaction(session, half_done)
    assert await count(sessions, 5) == 0


async def test_after_commit_work_is_drained_even_when_it_fails(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    tasks = AfterCommitTasks()
    done: list[str] = []

    async def fails() -> None:
        raise RuntimeError("SMTP down")

    async def succeeds() -> None:
        done.append("sent")

    async for session in session_scope(sessions, tasks):
        run_after_commit(session, fails)
        run_after_commit(session, succeeds)
    await tasks.drain()  # a failed action is logged, never raised into the drain
    assert done == ["sent"]


async def test_a_connection_lost_under_a_request_is_a_503_with_retry_after(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/work")
    async def work() -> dict[str, str]:
        async with sessions() as session:
            own_id = (await session.execute(text("SELECT CONNECTION_ID()"))).scalar_one()
            async with sessions() as admin:
                await admin.execute(text(f"KILL {int(own_id)}"))
            await session.execute(text("SELECT 1"))  # on the connection the server just dropped
        return {"done": "yes"}

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        response = await client.post("/work")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["code"] == "upstream_unavailable"


async def test_a_connection_dropped_while_idle_in_the_pool_is_replaced_unseen() -> None:
    url = database_url_for_tests("preorder_shared")
    engine = create_async_engine(url, pool_size=1, max_overflow=0)
    ping_connections_idle_for(engine, 0.0)  # every checkout counts as idle here
    try:
        async with engine.connect() as conn:
            dropped = (await conn.execute(text("SELECT CONNECTION_ID()"))).scalar_one()
        admin = create_async_engine(url)
        async with admin.connect() as conn:
            await conn.execute(text(f"KILL {int(dropped)}"))
        await admin.dispose()
        async with engine.connect() as conn:  # the ping on checkout finds it dead: a new one
            assert (await conn.execute(text("SELECT CONNECTION_ID()"))).scalar_one() != dropped
    finally:
        await engine.dispose()


async def test_a_database_error_does_not_carry_the_statements_values(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # What a log line of the error would show: never a password hash, a code hash or an email.
    async with sessions() as session:
        await session.execute(text("INSERT INTO notes VALUES (:id, :body)"),
                              {"id": 99, "body": "first"})
        with pytest.raises(DBAPIError) as failed:
            await session.execute(text("INSERT INTO notes VALUES (:id, :body)"),
                                  {"id": 99, "body": "secret-value"})
        await session.rollback()
    assert "secret-value" not in str(failed.value)
    assert "hidden due to hide_parameters" in str(failed.value)


async def test_a_bulk_update_is_one_statement_without_a_select_of_its_keys_first(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async for session in session_scope(sessions, AfterCommitTasks()):
        await insert(session, 40)
    statements: list[str] = []
    engine = sessions.kw["bind"]

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement.split()[0].upper())

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        async for session in session_scope(sessions, AfterCommitTasks()):
            # A criterion SQLAlchemy cannot evaluate in Python (a subquery): by default it would
            # SELECT the matching keys before the UPDATE to synchronize the session.
            await session.execute(update(Note).where(
                Note.id.in_(select(Note.id).where(Note.body == "x").scalar_subquery()),
                Note.id == 40).values(body="y"))
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)
    assert "SELECT" not in statements
    assert statements.count("UPDATE") == 1


class Notes:
    """Two repositories' worth of writes on one session, as a flow's `repositories` builds."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, note_id: int) -> None:
        await insert(self.session, note_id)


async def test_a_flows_transaction_commits_once_at_the_end_of_its_block(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    notes = Transactions(sessions, Notes)
    async with notes.write() as repository:
        await repository.add(401)
        await repository.add(402)
        assert await count(sessions, 401) == 0  # not committed until the block ends
    assert (await count(sessions, 401), await count(sessions, 402)) == (1, 1)


async def test_a_flows_transaction_keeps_nothing_when_its_block_raises(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    notes = Transactions(sessions, Notes)

    async def refused_half_way() -> None:
        async with notes.write() as repository:
            await repository.add(403)
            raise Conflict("refused half way")

    with pytest.raises(Conflict):
        await refused_half_way()
    assert await count(sessions, 403) == 0


async def test_a_flows_read_commits_nothing(sessions: async_sessionmaker[AsyncSession]) -> None:
    notes = Transactions(sessions, Notes)
    async with notes.read() as repository:
        await repository.add(404)
    assert await count(sessions, 404) == 0


async def test_a_connect_cut_before_it_had_a_socket_is_a_database_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """asyncmy raises a bare RuntimeError ("Transport does not expose socket instance") when the
    server closes a new connection before the driver sets its keep-alive (MariaDB killed
    mid-connect, seen in make chaos as a 500): it must reach the services as the driver's
    OperationalError, which they answer 503 like any database out of reach."""
    from shared.db import create_engine

    engine = create_engine(database_url_for_tests("preorder_shared", "connect"), pool_size=1)
    dialect = engine.sync_engine.dialect

    def cut(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Transport does not expose socket instance")

    monkeypatch.setattr(dialect, "connect", cut)
    try:
        with pytest.raises(OperationalError):
            async with engine.connect():
                pass
    finally:
        await engine.dispose()


async def driver_query(engine: AsyncEngine, statement: str) -> tuple[Any, ...]:
    """One statement on a pooled connection's driver, unseen by SQLAlchemy's Connection (which
    then has no transaction of its own to end), and the connection handed back."""
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        async with driver.cursor() as cursor:
            await cursor.execute(statement)
            return tuple(await cursor.fetchone() or ())


async def test_a_committed_transaction_comes_back_to_the_pool_without_a_rollback(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """SQLAlchemy's default reset sent ROLLBACK after every COMMIT: a round trip for nothing."""
    engine = create_engine(database_url_for_tests("preorder_shared"), pool_size=1)
    try:
        status = "SELECT CONNECTION_ID(), VARIABLE_VALUE FROM information_schema.SESSION_STATUS "\
                 "WHERE VARIABLE_NAME = 'COM_ROLLBACK'"
        before = await driver_query(engine, status)
        async with create_sessionmaker(engine)() as session, session.begin():
            await insert(session, 801)
        after = await driver_query(engine, status)
        assert after == before  # the same connection, and no ROLLBACK sent on it meanwhile
    finally:
        await engine.dispose()
    assert await count(sessions, 801) == 1


async def test_a_connection_back_with_a_transaction_left_open_is_rolled_back(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    engine = create_engine(database_url_for_tests("preorder_shared"), pool_size=1)
    try:
        [left] = await driver_query(engine, "SELECT CONNECTION_ID()")
        await driver_query(engine, "INSERT INTO notes (id, body) VALUES (802, 'left open')")
        # The same connection, kept: its own uncommitted row would show to it.
        assert await driver_query(
            engine, "SELECT CONNECTION_ID(), COUNT(*) FROM notes WHERE id = 802") == (left, 0)
    finally:
        await engine.dispose()
    assert await count(sessions, 802) == 0


async def test_a_connection_the_driver_closed_is_not_handed_out_again() -> None:
    """Cancelled in the middle of a statement, asyncmy closes the connection; the ROLLBACK on
    its return fails, and the pool drops it for a new one (the skipped ROLLBACK kept it)."""
    engine = create_engine(database_url_for_tests("preorder_shared"), pool_size=1)
    try:
        sleeping = asyncio.ensure_future(driver_query(engine, "SELECT SLEEP(5)"))
        await asyncio.sleep(0.3)
        sleeping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sleeping
        assert await driver_query(engine, "SELECT 1") == (1,)
    finally:
        await engine.dispose()


async def test_connections_opened_for_a_burst_are_kept_for_the_next(
    sessions: async_sessionmaker[AsyncSession],  # the schema
) -> None:
    """A burst past the pool's size opened connections and closed them as they came back
    (SQLAlchemy's overflow), so every burst opened them again: about one new connection per
    payment when an opening's winners paid, each a handshake for both the service and MySQL."""
    engine = create_engine(database_url_for_tests("preorder_shared"), pool_size=2)
    opened: list[object] = []
    event.listen(engine.sync_engine, "connect", lambda connection, record: opened.append(record))

    async def hold_a_connection() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT SLEEP(0.2)"))

    try:
        await asyncio.gather(*(hold_a_connection() for _ in range(4)))
        first_burst = len(opened)
        await asyncio.gather(*(hold_a_connection() for _ in range(4)))
        assert first_burst == 4
        assert len(opened) == first_burst
    finally:
        await engine.dispose()
