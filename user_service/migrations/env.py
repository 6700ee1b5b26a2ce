"""Alembic environment for user_service: sees user_service's metadata and nothing else."""

from shared.alembic_env import run_migrations
from user_service.models import metadata
from user_service.settings import get_settings

run_migrations(metadata, get_settings().database_url)
