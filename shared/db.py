"""Async engine and session factories, and the request-scoped session that alone commits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from shared.errors import ProblemError

logger = logging.getLogger("shared.db")

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
_background: set[asyncio.Task[Any]] = set()


def run_after_commit(session: AsyncSession, action: AfterCommit) -> None:
    """Schedule side effects (mail, cache writes) that must happen only once the rows are durable."""
    session.info.setdefault("after_commit", []).append(action)


async def _run_logged(action: AfterCommit) -> None:
    try:
        await action()
    except Exception:
        logger.exception("after-commit action failed")


def _fire_after_commit(session: AsyncSession) -> None:
    actions: list[AfterCommit] = session.info.pop("after_commit", [])
    for action in actions:
        task = asyncio.create_task(_run_logged(action))
        _background.add(task)
        task.add_done_callback(_background.discard)


async def drain_background_tasks() -> None:
    """Let in-flight after-commit work finish on shutdown."""
    if _background:
        await asyncio.gather(*list(_background), return_exceptions=True)


def commit_on_error(session: AsyncSession) -> None:
    """Keep this transaction's writes even though the request goes on to fail with a ProblemError.

    For writes that record the failure itself (a failed-attempt counter, a revoked session):
    rolling them back with the error response would undo the very thing the error reports.
    Unexpected exceptions still roll back.
    """
    session.info["commit_on_error"] = True


async def session_scope(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncGenerator[AsyncSession, None]:
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except ProblemError:
            if not session.info.pop("commit_on_error", False):
                session.info.pop("after_commit", None)
                await session.rollback()
                raise
            await session.commit()
            _fire_after_commit(session)
            raise
        except BaseException:
            session.info.pop("after_commit", None)
            await session.rollback()
            raise
    _fire_after_commit(session)


async def get_db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The one place that commits: on success after the handler, rollback on any error."""
    # As a context manager, not `async for`: the handler's exception must be thrown into
    # session_scope (to roll back at once, or honour commit_on_error), not left to the GC.
    async with asynccontextmanager(session_scope)(request.app.state.sessionmaker) as session:
        yield session


# scope="function": commit before the response is sent, so a client that gets 201 can rely on it.
DbSession = Annotated[AsyncSession, Depends(get_db_session, scope="function")]
