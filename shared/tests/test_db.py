"""The request session commits once on success, rolls back on error, keeps writes that record
a failure when asked, and runs after-commit work only once the rows are durable (real MariaDB)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import (
    commit_on_error,
    create_engine,
    create_sessionmaker,
    drain_background_tasks,
    run_after_commit,
    session_scope,
)
from shared.errors import Conflict
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


async def count(sessions: async_sessionmaker[AsyncSession], note_id: int) -> int:
    async with sessions() as session:
        return int((await session.execute(
            text("SELECT COUNT(*) FROM notes WHERE id = :id"), {"id": note_id})).scalar_one())


async def insert(session: AsyncSession, note_id: int) -> None:
    await session.execute(text("INSERT INTO notes VALUES (:id, 'x')"), {"id": note_id})


async def test_commits_on_success_then_runs_after_commit(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    seen: list[int] = []

    async def after() -> None:
        seen.append(await count(sessions, 1))  # the row must already be visible

    async for session in session_scope(sessions):
        await insert(session, 1)
        run_after_commit(session, after)
    await drain_background_tasks()
    assert seen == [1]


async def test_rolls_back_on_error_and_skips_after_commit(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    ran: list[bool] = []

    async def after() -> None:
        ran.append(True)

    scope = session_scope(sessions)
    session = await anext(scope)
    await insert(session, 2)
    run_after_commit(session, after)
    with pytest.raises(RuntimeError):
        await scope.athrow(RuntimeError("handler failed"))
    await drain_background_tasks()  # had it been scheduled, it would have run by now
    assert await count(sessions, 2) == 0
    assert ran == []


async def test_commit_on_error_keeps_the_failure_record(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    scope = session_scope(sessions)
    session = await anext(scope)
    await insert(session, 3)
    commit_on_error(session)
    with pytest.raises(Conflict):
        await scope.athrow(Conflict("the request still fails"))
    assert await count(sessions, 3) == 1


async def test_commit_on_error_does_not_cover_unexpected_errors(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    scope = session_scope(sessions)
    session = await anext(scope)
    await insert(session, 4)
    commit_on_error(session)
    with pytest.raises(KeyError):
        await scope.athrow(KeyError("a bug"))
    assert await count(sessions, 4) == 0
