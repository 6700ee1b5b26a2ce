"""Plain reads outside any transaction: the routes that only read (the hot GETs), and a
flow's reads of what another transaction committed (a payment's state, an order's effects).

Statements are written in SQLAlchemy Core, like every other statement, and compiled once for
MySQL. They run on a small pool of autocommit asyncmy connections of their own, not through
SQLAlchemy's async engine: on one read by primary key that layer (a greenlet hop per call,
Connection, CursorResult and pool bookkeeping) cost about 0.3 ms of CPU, more than the rest of
the request together (measured: 0.49 ms of CPU per read through AsyncConnection, 0.20 ms on the
driver; README, "Measured"). Transactions keep the engine and the ORM: there the unit of work
pays for itself.

An autocommit read sends no BEGIN, no COMMIT and no ROLLBACK: one round trip. A pooled
connection the server dropped while it sat idle is noticed by the pool (the socket saw EOF); one
dropped under a statement is retried once on a fresh connection, since a read has nothing to
repeat: there is no ping before use.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

import asyncmy
import asyncmy.errors
from asyncmy.connection import Connection
from sqlalchemy.dialects.mysql.asyncmy import dialect as asyncmy_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.sql import Select

from shared.errors import DatabaseUnavailable

logger = logging.getLogger("shared.reads")

_DIALECT = asyncmy_dialect()
# The dialect's disconnect test looks the driver's error classes up on its DBAPI module, and
# these reads raise asyncmy's own classes (not SQLAlchemy's adapted ones), so it gets those.
_DISCONNECTS = asyncmy_dialect()
_DISCONNECTS.dbapi = cast(Any, SimpleNamespace(
    Error=asyncmy.errors.MySQLError,
    OperationalError=asyncmy.errors.OperationalError,
    ProgrammingError=asyncmy.errors.ProgrammingError,
    InterfaceError=asyncmy.errors.InterfaceError,
    InternalError=asyncmy.errors.InternalError))
# Well under MySQL's default wait_timeout (8 h), so the server never drops a connection in use.
POOL_RECYCLE_SECONDS = 1800
# Compiled statements are kept by identity; statements are meant to be module constants with
# bindparam()s, so this bound is only a guard against one built per request.
_MAX_COMPILED = 1024
CLOSE_TIMEOUT_SECONDS = 5.0
# How long a read waits for one of the pool's connections before it is a 503, as a transaction
# waits for the engine's pool (SQLAlchemy's pool_timeout, 30 s): never a wait with no end.
WAIT_SECONDS = 30.0

ResultProcessor = Callable[[Any], Any] | None
AnySelect = Select[*tuple[Any, ...]]


@dataclass(frozen=True)
class CompiledRead:
    sql: str
    parameter_order: tuple[str, ...]
    defaults: Mapping[str, Any]
    keys: tuple[str, ...]
    processors: tuple[ResultProcessor, ...]

    @classmethod
    def of(cls, statement: AnySelect) -> CompiledRead:
        compiled = statement.compile(dialect=_DIALECT)
        sql = compiled.string
        if "POSTCOMPILE" in sql:
            raise ValueError("expanding parameters (IN lists) are not supported by ReadSession")
        columns = list(statement.selected_columns)
        processors = tuple(
            column.type.dialect_impl(_DIALECT).result_processor(_DIALECT, None)
            for column in columns
        )
        return cls(sql=sql, parameter_order=tuple(compiled.positiontup or ()),
                   defaults={name: bind.effective_value for name, bind in compiled.binds.items()
                             if not bind.required},
                   keys=tuple(str(c.key) for c in columns),
                   processors=processors)

    def arguments(self, parameters: Mapping[str, Any] | None) -> tuple[Any, ...]:
        values = {**self.defaults, **parameters} if parameters else self.defaults
        try:
            return tuple(values[name] for name in self.parameter_order)
        except KeyError as missing:
            raise ValueError(f"no value for bound parameter {missing}") from None

    def row(self, raw: Sequence[Any]) -> dict[str, Any]:
        return {key: (value if process is None or value is None else process(value))
                for key, value, process in zip(self.keys, raw, self.processors, strict=True)}


# The server answered but did not run the read (too many connections, a user's limit, shutting
# down, a lock wait): nothing to retry at once, and no fault of the request's.
_NOTHING_DECIDED = (asyncmy.errors.OperationalError, asyncmy.errors.InterfaceError)


def is_disconnect(error: BaseException) -> bool:
    """A connection the server (or the network) dropped or refused, as SQLAlchemy's dialect
    judges it (2003: cannot connect at all)."""
    if isinstance(error, OSError):
        return True
    if isinstance(error, asyncmy.errors.OperationalError) and error.args[:1] == (2003,):
        return True
    if not isinstance(error, asyncmy.errors.MySQLError) or not error.args:
        return False
    return bool(_DISCONNECTS.is_disconnect(cast(Any, error), None, None))


class ReadResult:
    """The rows of one read, each a dict by column key (what pydantic models validate)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def all(self) -> list[dict[str, Any]]:
        return self.rows

    def first(self) -> dict[str, Any] | None:
        return self.rows[0] if self.rows else None

    def scalar(self) -> Any:
        """The first column of the first row, or None when there is no row."""
        return next(iter(self.rows[0].values())) if self.rows else None


class ReadSession:
    def __init__(self, pool: Any, *, pool_size: int, wait_seconds: float = WAIT_SECONDS) -> None:
        self._pool = pool
        self.wait_seconds = wait_seconds
        # Readers queue here, first come first served, never inside the pool: asyncmy's pool
        # hands a freed connection to whoever asks next, so under a crowd some readers waited
        # half a second while newcomers went first (p99 471 ms against p50 9 ms at 64
        # connections).
        self._turns = asyncio.Semaphore(pool_size)
        self._compiled: dict[int, tuple[AnySelect, CompiledRead]] = {}

    @classmethod
    async def open(cls, database_url: str, *, pool_size: int,
                   wait_seconds: float = WAIT_SECONDS) -> ReadSession:
        """Connects as SQLAlchemy would (the same URL and driver arguments), in autocommit."""
        _, connect_args = _DIALECT.create_connect_args(make_url(database_url))
        connect_args.setdefault("charset", "utf8mb4")
        pool = await asyncmy.create_pool(minsize=0, maxsize=pool_size, autocommit=True,
                                         pool_recycle=POOL_RECYCLE_SECONDS, **connect_args)
        return cls(pool, pool_size=pool_size, wait_seconds=wait_seconds)

    async def close(self) -> None:
        self._pool.close()
        try:
            # Bounded: a shutdown must never hang on a connection that does not say goodbye.
            await asyncio.wait_for(self._pool.wait_closed(), CLOSE_TIMEOUT_SECONDS)
        except TimeoutError:
            logger.warning("read pool did not close in time; closing its connections hard")
            self._pool.terminate()

    def compiled(self, statement: AnySelect) -> CompiledRead:
        entry = self._compiled.get(id(statement))
        if entry is None or entry[0] is not statement:
            if len(self._compiled) >= _MAX_COMPILED:
                self._compiled.clear()
            entry = (statement, CompiledRead.of(statement))
            self._compiled[id(statement)] = entry
        return entry[1]

    async def execute(self, statement: AnySelect,
                      parameters: Mapping[str, Any] | None = None) -> ReadResult:
        read = self.compiled(statement)
        arguments = read.arguments(parameters)
        for attempt in (1, 2):
            try:
                async with self._turn(), self._pool.acquire() as connection:
                    rows = await self._run(connection, read.sql, arguments)
                return ReadResult([read.row(raw) for raw in rows])
            except Exception as error:
                if not is_disconnect(error):
                    if isinstance(error, _NOTHING_DECIDED):
                        # As the engine judges an OperationalError (shared.errors): a 503.
                        raise DatabaseUnavailable() from error
                    raise
                if attempt == 2:
                    raise DatabaseUnavailable() from error
                logger.warning("read met a dropped connection; retrying once on another")
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """A reader's turn at the pool, waited for at most `wait_seconds`. A wait cut short
        after its turn came gives the turn on (Semaphore.acquire), so none is lost."""
        try:
            async with asyncio.timeout(self.wait_seconds):
                await self._turns.acquire()
        except TimeoutError:
            raise DatabaseUnavailable() from None
        try:
            yield
        finally:
            self._turns.release()

    @staticmethod
    async def _run(connection: Connection, sql: str, arguments: tuple[Any, ...]) -> list[Any]:
        try:
            async with connection.cursor() as cursor:
                await cursor.execute(sql, arguments)
                return list(await cursor.fetchall())
        except Exception as error:
            if is_disconnect(error):
                # Never back into the pool: the next acquire opens a fresh connection.
                connection.close()
            raise
