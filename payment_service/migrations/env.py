"""Alembic environment for payment_service: sees payment_service's metadata and nothing else."""

from payment_service.models import metadata
from payment_service.settings import get_settings
from shared.alembic_env import run_migrations

run_migrations(metadata, get_settings().database_url)
