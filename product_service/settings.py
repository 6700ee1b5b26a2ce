"""product_service settings, read from PRODUCT_* environment variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.services import service
from shared.settings import DatastoreSettings


class Settings(DatastoreSettings):
    model_config = SettingsConfigDict(env_prefix="PRODUCT_")

    database_url: str = "mysql+asyncmy://root@127.0.0.1:3306/preorder_product"

    # Where stock_service takes product registrations (its internal API), and how long a call
    # may take before the product change fails with 503.
    stock_service_url: str = service("stock").local_url
    stock_service_timeout_seconds: float = Field(default=2.0, gt=0)
    # How long a product's detail stays in Redis (every change deletes it at once anyway).
    detail_cache_seconds: int = Field(default=300, gt=0)
    # A product still `pending` this long after its row was written lost its creating request
    # (a crash, or a failure that could not clean up): it is removed on both sides. Well above
    # the stock call's timeout, so a creation still in flight is never settled under it.
    pending_settle_after_seconds: float = Field(default=30.0, gt=0)
    pending_settle_interval_seconds: float = Field(default=10.0, gt=0)


@lru_cache
def get_settings() -> Settings:
    return Settings()
