"""Alembic environment for product_service: sees product_service's metadata and nothing else."""

from product_service.models import metadata
from product_service.settings import get_settings
from shared.alembic_env import run_migrations

run_migrations(metadata, get_settings().database_url)
