"""Alembic environment for stock_service: sees stock_service's metadata and nothing else."""

from shared.alembic_env import run_migrations
from stock_service.db import Base
from stock_service.settings import get_settings

run_migrations(Base.metadata, get_settings().database_url)
