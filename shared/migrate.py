"""Create a service's schema if it is missing and run its Alembic chain to head.

The command that does it for every service is `python -m deploy.migrate`; this module takes the
service's package and database URL as arguments and knows no service itself.

A chain runs under a MySQL named lock per schema (`migration_lock`, taken by every service's
env.py through shared.alembic_env), so two runs at once (replicas starting together, a Kubernetes
Job beside `make run`, a retried Job) take turns: the second finds the schema at head.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# How long a run waits for another run of the same schema's chain before it gives up.
MIGRATION_LOCK_TIMEOUT_SECONDS = 600
# How long a run waits for the database server to be reached at all. A container often starts
# before its network's names resolve or the server listens (seen in make swarm-check: replicas
# started during a sale exited on "Name or service not known" for `mysql`, and each restart
# cost the busy machine another interpreter start).
SERVER_WAIT_SECONDS = 60.0
# MySQL client errors that mean the server was not reached (refused, unknown host, lost at
# connect), as against one that answered and refused (a wrong password is not waited out).
_NOT_REACHED = frozenset({2002, 2003, 2005, 2006, 2013})
# MySQL refuses lock names past 64 characters.
_MAX_LOCK_NAME = 64
logger = logging.getLogger("shared.migrate")


class MigrationLockTimeout(RuntimeError):
    pass


def migration_lock_name(schema: str) -> str:
    """Per schema, so different services migrate side by side; server-wide in MySQL."""
    name = f"preorder.migrate.{schema}"
    if len(name) > _MAX_LOCK_NAME:
        raise ValueError(f"schema name too long for a migration lock: {schema!r}")
    return name


@contextmanager
def migration_lock(connection: Connection, *,
                   timeout: float = MIGRATION_LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
    """Holds the schema's named lock on `connection` (the one the chain runs on) meanwhile.

    A named lock belongs to the session, not to a transaction, so the DDL's implicit commits do
    not release it; a connection that dies releases it with itself.
    """
    name = migration_lock_name(str(connection.engine.url.database))
    got = connection.execute(text("SELECT GET_LOCK(:name, :timeout)"),
                             {"name": name, "timeout": timeout}).scalar()
    # Alembic begins its own transaction; the one the SELECT began must not be open then.
    connection.commit()
    if got != 1:
        raise MigrationLockTimeout(f"another migration of {name!r} held its lock past {timeout} s")
    try:
        yield
    finally:
        connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})
        connection.commit()


def alembic_config(service_package: str, database_url: str) -> Config:
    package_dir = Path(importlib.import_module(service_package).__file__ or "").parent
    config = Config(str(package_dir / "migrations" / "alembic.ini"))
    config.set_main_option("script_location", str(package_dir / "migrations"))
    # Passed as an attribute, not through the ini, so a password never meets configparser's %.
    config.attributes["database_url"] = database_url
    return config


def _not_reached(error: BaseException) -> bool:
    orig = getattr(error, "orig", error)
    code = orig.args[0] if isinstance(orig, Exception) and orig.args else None
    return isinstance(orig, OSError) or code in _NOT_REACHED


async def _reached(engine: AsyncEngine, seconds: float) -> None:
    """Returns once a connection to the server is made; the last error past `seconds`, or at
    once for an error other than not reaching it."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            async with engine.connect():
                return
        except (DBAPIError, OSError) as error:
            if not _not_reached(error) or time.monotonic() >= deadline:
                raise
            logger.warning("database server not reached yet; waiting",
                           extra={"error": repr(getattr(error, "orig", error))})
        await asyncio.sleep(1.0)


async def ensure_database(database_url: str, *, drop_first: bool = False,
                          server_wait_seconds: float = SERVER_WAIT_SECONDS) -> None:
    url = make_url(database_url)
    schema = url.database
    if not schema or not schema.replace("_", "").isalnum():
        raise ValueError(f"unsafe or missing schema name in database URL: {schema!r}")
    engine = create_async_engine(url._replace(database=None))
    try:
        await _reached(engine, server_wait_seconds)
        async with engine.begin() as conn:
            if drop_first:
                await conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{schema}`")
            await conn.exec_driver_sql(
                f"CREATE DATABASE IF NOT EXISTS `{schema}` "
                "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
    finally:
        await engine.dispose()


def upgrade(service_package: str, database_url: str, *, drop_first: bool = False) -> None:
    """Synchronous on purpose: Alembic's env.py runs its own event loop."""
    # DDL makes MariaDB send notes ("database exists", "name ignored for PRIMARY key") that
    # asyncmy logs as warnings; they are expected here and would only bury real output.
    logging.getLogger("asyncmy").setLevel(logging.ERROR)
    asyncio.run(ensure_database(database_url, drop_first=drop_first))
    command.upgrade(alembic_config(service_package, database_url), "head")


async def at_head(service_package: str, database_url: str) -> bool:
    """Whether the schema exists and its chain is at head (what an app needs before it starts)."""
    heads = set(ScriptDirectory.from_config(alembic_config(service_package, database_url)).get_heads())
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            current = await conn.run_sync(
                lambda sync: set(MigrationContext.configure(sync).get_current_heads()))
    except Exception as exc:  # a schema or server not there yet is the usual answer while waiting
        logger.info("schema not reachable yet", extra={"error": repr(exc)})
        return False
    finally:
        await engine.dispose()
    return current == heads


async def wait_for_head(service_package: str, database_url: str, *, interval: float = 2.0) -> None:
    """Returns once another process (a Kubernetes Job) has brought the schema to head."""
    while True:
        if await at_head(service_package, database_url):
            return
        await asyncio.sleep(interval)
