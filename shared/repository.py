"""What every service's repositories stand on: plain reads on the ReadSession (no transaction,
for the routes that only read) and changes on a session, made with whichever the caller has;
the two answers of a change that SQLAlchemy's typing leaves to a cast; and MySQL's error
numbers the services act on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import CursorResult, Executable
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.reads import ReadSession

# MySQL error 1062: a unique key refused the row (an Idempotency-Key used before, a second hold
# of one order, a second live payment of one order, an address taken).
DUPLICATE_ENTRY = 1062


def error_code(error: DBAPIError) -> object:
    """MySQL's error number of a driver error (1062 duplicate entry, 1213 deadlock, ...)."""
    return getattr(error.orig, "args", (None,))[0]


def is_duplicate_entry(error: DBAPIError) -> bool:
    return error_code(error) == DUPLICATE_ENTRY


class Repository:
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
            raise TypeError("writes need a session; this repository only reads")
        return self._session


async def execute_counted(session: AsyncSession, statement: Executable,
                          parameters: Mapping[str, Any] | None = None) -> int:
    """The rows an INSERT, UPDATE or DELETE affected (IGNORE: 0 when the key already existed)."""
    result = await session.execute(statement, parameters)
    return int(cast("CursorResult[*tuple[Any, ...]]", result).rowcount)


async def execute_insert(session: AsyncSession, statement: Executable,
                         parameters: Mapping[str, Any] | None = None) -> int:
    """The id the database gave the row an INSERT added."""
    result = await session.execute(statement, parameters)
    key = cast("CursorResult[*tuple[Any, ...]]", result).inserted_primary_key
    assert key is not None
    return int(key[0])
