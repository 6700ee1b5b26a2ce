"""Alembic environment for order_service: sees order_service's metadata and nothing else."""

from order_service.models import metadata
from order_service.settings import get_settings
from shared.alembic_env import run_migrations

run_migrations(metadata, get_settings().database_url)
