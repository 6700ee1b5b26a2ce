"""Alembic environment for social_service: sees social_service's metadata and nothing else."""

from shared.alembic_env import run_migrations
from social_service.models import metadata
from social_service.settings import get_settings

run_migrations(metadata, get_settings().database_url)
