"""Create a service's schema if it is missing and run its Alembic chain to head.

The command that does it for every service is `python -m deploy.migrate`; this module takes the
service's package and database URL as arguments and knows no service itself.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine


def alembic_config(service_package: str, database_url: str) -> Config:
    package_dir = Path(importlib.import_module(service_package).__file__ or "").parent
    config = Config(str(package_dir / "migrations" / "alembic.ini"))
    config.set_main_option("script_location", str(package_dir / "migrations"))
    # Passed as an attribute, not through the ini, so a password never meets configparser's %.
    config.attributes["database_url"] = database_url
    return config


async def ensure_database(database_url: str, *, drop_first: bool = False) -> None:
    url = make_url(database_url)
    schema = url.database
    if not schema or not schema.replace("_", "").isalnum():
        raise ValueError(f"unsafe or missing schema name in database URL: {schema!r}")
    engine = create_async_engine(url._replace(database=None))
    try:
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
