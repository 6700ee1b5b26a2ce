"""social_service settings, read from SOCIAL_* environment variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic_settings import SettingsConfigDict

from shared.settings import DatastoreSettings


class Settings(DatastoreSettings):
    model_config = SettingsConfigDict(env_prefix="SOCIAL_")

    database_url: str = "mysql+asyncmy://root@127.0.0.1:3306/preorder_social"


@lru_cache
def get_settings() -> Settings:
    return Settings()
