"""social_service's own DeclarativeBase: its metadata holds only this service's tables."""

from __future__ import annotations

from typing import Any, TypeAlias, cast

from sqlalchemy import CursorResult, Executable, Row
from sqlalchemy.dialects.mysql import DATETIME, INTEGER
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase

from shared.db import service_metadata
from shared.reads import ReadSession


class Base(DeclarativeBase):
    metadata = service_metadata()


# Naive UTC with microseconds (shared.clock.utcnow): the feed orders by (created_at, id), and
# second precision would leave most of a busy second's posts ordered by id alone.
Timestamp = DATETIME(fsp=6)
# Counters are unsigned: a bug that took one below zero fails its statement instead of being
# stored (MariaDB's strict mode refuses the out-of-range value).
Counter = INTEGER(unsigned=True)

# A row of any columns (SQLAlchemy types rows by their column types; the repositories hand rows
# straight to a response model, which checks them).
AnyRow: TypeAlias = Row[*tuple[Any, ...]]


async def execute_counted(session: AsyncSession, statement: Executable) -> int:
    """The rows an INSERT, UPDATE or DELETE affected (IGNORE: 0 when the key already existed)."""
    result = await session.execute(statement)
    return int(cast("CursorResult[*tuple[Any, ...]]", result).rowcount)


async def execute_insert(session: AsyncSession, statement: Executable) -> int:
    """The id the database gave the row an INSERT added."""
    result = await session.execute(statement)
    key = cast("CursorResult[*tuple[Any, ...]]", result).inserted_primary_key
    assert key is not None
    return int(key[0])


class Repository:
    """A domain's statements: plain reads on the ReadSession (no transaction, for the routes
    that only read), changes on the request session. Made with whichever the caller has."""

    def __init__(self, *, reads: ReadSession | None = None,
                 session: AsyncSession | None = None) -> None:
        self._reads = reads
        self._session = session

    @property
    def reads(self) -> ReadSession:
        if self._reads is None:
            raise TypeError("this repository was made for writes only")
        return self._reads

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            raise TypeError("writes need the request session; this repository only reads")
        return self._session
