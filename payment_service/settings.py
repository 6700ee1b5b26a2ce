"""payment_service settings, read from PAYMENT_* environment variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic_settings import SettingsConfigDict

from shared.settings import DatabaseSettingsMixin, ServiceSettings


class Settings(ServiceSettings, DatabaseSettingsMixin):
    model_config = SettingsConfigDict(env_prefix="PAYMENT_", extra="ignore", frozen=True)

    database_url: str = "mysql+asyncmy://root@127.0.0.1:3306/preorder_payment"


@lru_cache
def get_settings() -> Settings:
    return Settings()
