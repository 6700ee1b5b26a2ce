"""stock_service settings, read from STOCK_* environment variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic_settings import SettingsConfigDict

from shared.settings import DatastoreSettings


class Settings(DatastoreSettings):
    model_config = SettingsConfigDict(env_prefix="STOCK_")

    database_url: str = "mysql+asyncmy://root@127.0.0.1:3306/preorder_stock"


@lru_cache
def get_settings() -> Settings:
    return Settings()
