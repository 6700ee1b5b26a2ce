"""payment_service settings, read from PAYMENT_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from shared.services import service
from shared.settings import DatastoreSettings


class Settings(DatastoreSettings):
    model_config = SettingsConfigDict(env_prefix="PAYMENT_")

    database_url: str = "mysql+asyncmy://root@127.0.0.1:3306/preorder_payment"
    order_service_url: str = service("order").local_url
    # The simulated processor declines this share of valid cards other than the test cards
    # (PAYMENT_FAILURE_RATE, the contract's name).
    failure_rate: float = Field(default=0.2, ge=0, le=1)
    call_timeout_seconds: float = Field(default=5.0, gt=0)
    outbox_interval_seconds: float = Field(default=0.5, gt=0)
    stale_interval_seconds: float = Field(default=15.0, gt=0)
    # Tests only: the process exits at this point of a payment, to prove a crash loses nothing.
    fault_point: Literal["after_outcome"] | None = None

    @model_validator(mode="after")
    def _faults_only_in_tests(self) -> Settings:
        if self.fault_point is not None and self.environment != "test":
            raise ValueError("PAYMENT_FAULT_POINT is honoured only with APP_ENV=test")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
