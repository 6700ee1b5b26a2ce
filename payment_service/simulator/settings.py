"""The simulator's settings, read from PROCESSOR_SIM_* environment variables; the fault rates can
also be changed while it runs (PUT /_sim/faults)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from payment_service.payments.processor_api import DEVELOPMENT_WEBHOOK_SECRET
from shared.services import service
from shared.settings import DEVELOPMENT_PLACEHOLDER, Environment

Rate = Field(default=0.0, ge=0, le=1)


class Faults(BaseModel):
    """What the simulator does to answers and webhooks; all adjustable at runtime."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Every answer takes this long (plus up to as much again at random).
    latency_ms: int = Field(default=20, ge=0, le=600_000)
    # Shares of charge requests: answered only after timeout_ms (past the caller's timeout),
    # taken but never answered (the connection is closed), answered `pending` (the outcome
    # follows by webhook after pending_ms).
    timeout_rate: float = Rate
    timeout_ms: int = Field(default=30_000, ge=0, le=600_000)
    lost_answer_rate: float = Rate
    pending_rate: float = Rate
    pending_ms: int = Field(default=500, ge=0, le=600_000)
    # The contract's PAYMENT_FAILURE_RATE: valid cards other than the test cards are declined
    # (processor_declined) at this rate.
    decline_rate: float = Field(default=0.2, ge=0, le=1)
    # Shares of webhook deliveries: sent twice; held back by reorder_ms so later ones overtake.
    webhook_duplicate_rate: float = Rate
    webhook_reorder_rate: float = Rate
    reorder_ms: int = Field(default=1_500, ge=0, le=600_000)


class FaultsUpdate(BaseModel):
    """PUT /_sim/faults: any subset of Faults."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: int | None = Field(default=None, ge=0, le=600_000)
    timeout_rate: float | None = Field(default=None, ge=0, le=1)
    timeout_ms: int | None = Field(default=None, ge=0, le=600_000)
    lost_answer_rate: float | None = Field(default=None, ge=0, le=1)
    pending_rate: float | None = Field(default=None, ge=0, le=1)
    pending_ms: int | None = Field(default=None, ge=0, le=600_000)
    decline_rate: float | None = Field(default=None, ge=0, le=1)
    webhook_duplicate_rate: float | None = Field(default=None, ge=0, le=1)
    webhook_reorder_rate: float | None = Field(default=None, ge=0, le=1)
    reorder_ms: int | None = Field(default=None, ge=0, le=600_000)


class SimulatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROCESSOR_SIM_", extra="ignore", frozen=True,
                                      env_ignore_empty=True, validate_by_name=True,
                                      hide_input_in_errors=True)

    environment: Environment = Field(
        default="production", validation_alias=AliasChoices("APP_ENV", "ENVIRONMENT"))
    log_level: str = Field(default="INFO", validation_alias=AliasChoices("LOG_LEVEL"))
    latency_ms: int = Field(default=20, ge=0)
    timeout_rate: float = Rate
    timeout_ms: int = Field(default=30_000, ge=0)
    lost_answer_rate: float = Rate
    pending_rate: float = Rate
    pending_ms: int = Field(default=500, ge=0)
    decline_rate: float = Field(default=0.2, ge=0, le=1, validation_alias=AliasChoices(
        "PROCESSOR_SIM_DECLINE_RATE", "PAYMENT_FAILURE_RATE", "decline_rate"))
    webhook_duplicate_rate: float = Rate
    webhook_reorder_rate: float = Rate
    reorder_ms: int = Field(default=1_500, ge=0)
    # Where outcomes are POSTed, signed with the secret payment_service checks them with.
    webhook_url: str = service("payment").local_url + "/webhooks/processor"
    webhook_secret: SecretStr = SecretStr(DEVELOPMENT_WEBHOOK_SECRET)
    # Seconds between attempts of an unanswered webhook (doubling, up to 30 s).
    webhook_retry_seconds: float = Field(default=0.5, gt=0)
    # A seed makes the faults repeatable (a chaos run's seed).
    seed: int | None = None

    def faults(self) -> Faults:
        return Faults(**{name: getattr(self, name) for name in Faults.model_fields})

    @model_validator(mode="after")
    def _no_development_secret_in_production(self) -> SimulatorSettings:
        if (self.environment == "production"
                and self.webhook_secret.get_secret_value().startswith(DEVELOPMENT_PLACEHOLDER)):
            raise ValueError("PROCESSOR_SIM_WEBHOOK_SECRET must be set in production")
        return self


@lru_cache
def get_settings() -> SimulatorSettings:
    return SimulatorSettings()
