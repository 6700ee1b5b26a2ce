"""Async engine and session factories, the request session that alone commits, work that runs
once a commit is durable, and the short transaction of its own that a failure record needs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

logger = logging.getLogger("shared.db")
T = TypeVar("T")

# MySQL needs constraint names to drop them; every service's MetaData uses this convention.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def service_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


def create_engine(url: str, *, pool_size: int = 20, echo: bool = False) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=3600,
        echo=echo,
        # READ COMMITTED: rows locked FOR UPDATE are re-read fresh, and no gap locks
        # turn concurrent inserts into deadlocks.
        isolation_level="READ COMMITTED",
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


AfterCommit = Callable[[], Awaitable[Any]]


class AfterCommitTasks:
    """Side effects started once their transaction committed, owned by the app's lifespan: it
    drains them at shutdown, so a mail queued by the last request still goes out."""

    def __init__(self) -> None:
        self._running: set[asyncio.Task[None]] = set()

    def start(self, actions: list[AfterCommit]) -> None:
        for action in actions:
            task = asyncio.create_task(self._run_logged(action))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    @staticmethod
    async def _run_logged(action: AfterCommit) -> None:
        try:
            await action()
        except Exception:
            logger.exception("after-commit action failed")

    async def drain(self) -> None:
        """Wait for the work in flight (tests call it to see a side effect happen)."""
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)


def run_after_commit(session: AsyncSession, action: AfterCommit) -> None:
    """Schedule side effects (mail, cache writes) that must happen only once the rows are durable."""
    session.info.setdefault("after_commit", []).append(action)


async def session_scope(
    sessionmaker: async_sessionmaker[AsyncSession], after_commit: AfterCommitTasks
) -> AsyncGenerator[AsyncSession, None]:
    """Commit on success, then start the after-commit work; on any error roll back and drop it."""
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            session.info.pop("after_commit", None)
            await session.rollback()
            raise
        after_commit.start(session.info.pop("after_commit", []))


async def in_own_transaction(
    session: AsyncSession, write: Callable[[AsyncSession], Awaitable[T]]
) -> T:
    """Run `write` in a short transaction of its own, committed at once, whatever becomes of the
    request's transaction. For what records a failure (a spent attempt, a revoked session): the
    request then fails and rolls back, and would otherwise undo the very thing its error reports.

    Only what `write` does is kept, nothing the request flushed before. It runs on another
    connection, so it must not need a row the request's transaction holds locked: roll that
    back first (`await session.rollback()`) if it does.
    """
    async with AsyncSession(bind=session.bind, expire_on_commit=False) as own, own.begin():
        return await write(own)
