"""Alembic environment for stock_service: sees stock_service's metadata and nothing else."""

from shared.alembic_env import run_migrations
from stock_service.models import metadata
from stock_service.settings import get_settings

run_migrations(metadata, get_settings().database_url)
