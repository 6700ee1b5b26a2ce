"""The body of every service's migrations/env.py: async, this service's metadata only."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from shared.migrate import migration_lock


def run_migrations(metadata: MetaData, default_url: str) -> None:
    config = context.config
    url = config.attributes.get("database_url") or default_url

    def do_run(connection: Connection) -> None:
        # Two runs of one chain at once would both create the same tables; they take turns.
        with migration_lock(connection):
            context.configure(connection=connection, target_metadata=metadata, compare_type=True)
            with context.begin_transaction():
                context.run_migrations()

    async def run_async() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                await conn.run_sync(do_run)
        finally:
            await engine.dispose()

    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(run_async())
