"""Alembic environment for user_service: sees user_service's metadata and nothing else."""

import user_service.auth.models  # noqa: F401  (registers the tables on Base.metadata)
from shared.alembic_env import run_migrations
from user_service.db import Base
from user_service.settings import get_settings

run_migrations(Base.metadata, get_settings().database_url)
