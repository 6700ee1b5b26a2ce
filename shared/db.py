"""The engine and sessions of transactions, and the two ways a service commits:

- a simple route: the request session (`session_scope`, handed out as `SessionDep`) commits
  once after the handler, and the service only flushes;
- a multi-step flow that must commit in the middle (a hold confirmed before an insert, a state
  change before the call it owes another service): `Transactions`, one named helper whose every
  `write()` block is one transaction on one session, committed once.

Also: work that runs once a commit is durable, and the short transaction of its own that a
failure record needs. (Plain reads outside a transaction are shared.reads.)"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

from sqlalchemy import MetaData, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import ORMExecuteState, Session
from sqlalchemy.pool import ConnectionPoolEntry, PoolResetState

from shared.tracing import active as active_tracing

logger = logging.getLogger("shared.db")
T = TypeVar("T")
Repositories = TypeVar("Repositories")

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


# A pooled connection idle for longer than this is pinged before it is handed out, so one the
# server dropped meanwhile (a restart, wait_timeout) is replaced instead of failing a request.
# Under load connections come back within milliseconds and are never pinged: a ping on every
# checkout (pool_pre_ping) cost a round trip per request.
IDLE_PING_SECONDS = 5.0
# Well under MySQL's default wait_timeout (8 h), so the server never drops a pooled connection
# that is in regular use.
POOL_RECYCLE_SECONDS = 1800


def connect_errors_as_the_drivers(engine: AsyncEngine) -> None:
    """asyncmy raises a bare RuntimeError ("Transport does not expose socket instance") when
    the server closes a new connection before the driver sets its keep-alive (MariaDB killed
    mid-connect): made the driver's OperationalError (2013, lost connection), SQLAlchemy wraps
    it as for any server out of reach, and the services answer 503, not 500."""

    @event.listens_for(engine.sync_engine, "do_connect")
    def _connect(dialect: Any, record: ConnectionPoolEntry, cargs: Any, cparams: Any) -> Any:
        try:
            return dialect.connect(*cargs, **cparams)
        except RuntimeError as error:
            raise dialect.loaded_dbapi.OperationalError(2013, str(error)) from error


def ping_connections_idle_for(engine: AsyncEngine, seconds: float) -> None:
    @event.listens_for(engine.sync_engine, "checkin")
    def _mark_idle(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since <= seconds:
            return
        try:
            dbapi_connection.ping(False)
        except Exception as error:
            # The pool discards this connection and checks out (or opens) another.
            raise DisconnectionError("idle connection was dropped by the server") from error


def roll_back_only_open_transactions(engine: AsyncEngine) -> None:
    """A connection comes back to the pool rolled back only if the server's last answer on it
    said a transaction is open (the flag asyncmy's own pool trusts for the same choice), or if
    the driver has closed it (the ROLLBACK then fails and the pool drops it, as before).

    SQLAlchemy's default reset sent ROLLBACK after every COMMIT too (the server's log showed
    COMMIT, ROLLBACK for each transaction): a round trip per transaction, one in four of a
    payment lease's. A transaction that failed is rolled back by its session before the
    connection comes back, and one closed open by its Connection is rolled back there
    (`transaction_was_reset`); this stays the net for anything else run through SQLAlchemy.
    Not for a statement sent on the driver itself that failed: an error packet leaves the flag
    as the last COMMIT set it, while the server may hold that statement's locks."""

    @event.listens_for(engine.sync_engine, "reset")
    def _reset(dbapi_connection: Any, record: ConnectionPoolEntry, state: PoolResetState) -> None:
        if state.terminate_only or not state.asyncio_safe or state.transaction_was_reset:
            return
        driver = dbapi_connection.driver_connection
        if driver.connected and not driver.get_transaction_status():
            return
        dbapi_connection.rollback()


def create_engine(url: str, *, pool_size: int = 20, echo: bool = False) -> AsyncEngine:
    """The service's engine for transactions (plain reads use shared.reads.ReadSession).

    READ COMMITTED: rows locked FOR UPDATE are re-read fresh, and no gap locks turn concurrent
    inserts into deadlocks. hide_parameters: an error's message (and so a log line) never
    carries the statement's values: a password hash, a code hash, an email. The pool's own
    reset is off: roll_back_only_open_transactions does it.

    Up to twice `pool_size` connections, each kept once opened. With the second half as
    SQLAlchemy's overflow, a connection opened for a burst was closed as it came back and
    opened again for the next: 191 new connections for 200 payments in one bench_sale round,
    each a handshake for the service and for MySQL. Handed out last in, first out: in a quiet
    spell the connections used most stay warm, and the rest sit idle rather than each being
    pinged in turn (IDLE_PING_SECONDS).
    """
    engine = create_async_engine(url, pool_size=2 * pool_size, max_overflow=0, pool_use_lifo=True,
                                 pool_recycle=POOL_RECYCLE_SECONDS, echo=echo,
                                 isolation_level="READ COMMITTED", hide_parameters=True,
                                 pool_reset_on_return=None)
    roll_back_only_open_transactions(engine)
    ping_connections_idle_for(engine, IDLE_PING_SECONDS)
    connect_errors_as_the_drivers(engine)
    if (tracing := active_tracing()) is not None:
        tracing.instrument_engine(engine)
    return engine


class RepositorySession(Session):
    """The sessions repositories write through. Their UPDATE and DELETE statements never
    synchronize loaded objects: a repository does not keep ORM objects across its own bulk
    statements, and on MariaDB (no UPDATE ... RETURNING) SQLAlchemy's default would send a
    SELECT of the matching keys first, an extra round trip inside the transaction (measured on
    stock_service's hold, where that round trip is spent holding the product's row lock)."""


@event.listens_for(RepositorySession, "do_orm_execute")
def _no_session_synchronization(state: ORMExecuteState) -> None:
    if state.is_update or state.is_delete:
        state.update_execution_options(synchronize_session=False)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False,
                              sync_session_class=RepositorySession)


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


class Transactions(Generic[Repositories]):
    """The transactions of a multi-step flow, by name: `write()` opens one transaction on one
    session and yields the flow's repositories built on it (`repositories(session)`: one
    repository, or an object holding several); it commits once when the block ends and rolls
    back if the block raises. `read()` yields them on a session that commits nothing, for the
    reads a flow makes between its transactions (locks taken there end with the block).

        orders = Transactions(sessionmaker, OrderRepository)
        async with orders.write() as repository:
            await repository.cancel(order_id)
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 repositories: Callable[[AsyncSession], Repositories]) -> None:
        self.sessions = sessions
        self.repositories = repositories

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Repositories]:
        async with self.sessions() as session, session.begin():
            yield self.repositories(session)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Repositories]:
        async with self.sessions() as session:
            yield self.repositories(session)
