"""Alembic environment for payment_service: sees payment_service's metadata and nothing else."""

from payment_service.db import Base
from payment_service.settings import get_settings
from shared.alembic_env import run_migrations

run_migrations(Base.metadata, get_settings().database_url)
