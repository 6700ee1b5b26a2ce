"""payment_service settings, read from PAYMENT_* environment variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from payment_service.payments.processor_api import DEVELOPMENT_WEBHOOK_SECRET
from shared.services import PROCESSOR_SIM, service
from shared.settings import DEVELOPMENT_PLACEHOLDER, DatastoreSettings, refuse_in_production

DEVELOPMENT_FINGERPRINT_KEY = DEVELOPMENT_PLACEHOLDER + "payment-fingerprint-key-0123456789"
MIN_FINGERPRINT_KEY_LENGTH = 32


class Settings(DatastoreSettings):
    model_config = SettingsConfigDict(env_prefix="PAYMENT_")

    database_url: str = "mysql+asyncmy://root@127.0.0.1:3306/preorder_payment"
    # Its port for the other services' calls (shared/internal_listener.py) under `make run`.
    order_service_url: str = service("order").local_internal_url
    call_timeout_seconds: float = Field(default=5.0, gt=0)
    # The card processor's API (payments/processor_api.py); the simulator under `make run`.
    processor_url: str = PROCESSOR_SIM.local_url
    # Each request to it waits this long for an answer, and one whose answer is lost is sent
    # again (same idempotency key) up to `processor_attempts` times in all: together below the
    # gateway's upstream timeout (10 s).
    processor_timeout_seconds: float = Field(default=2.0, gt=0)
    processor_attempts: int = Field(default=3, ge=1, le=10)
    # A POST /api/v1/payments is answered within this, whatever its waits (the order's lease,
    # the charge and its retries, a pending charge's decision) would add up to: keep it below
    # the gateway's upstream timeout (10 s). The last 2 s are kept for settling the outcome (or
    # voiding a charge given up on), so it must be more than that.
    budget_seconds: float = Field(default=8.0, gt=2.0)
    # Webhooks from the processor are signed with this secret (HMAC-SHA256 over
    # "<timestamp>.<body>") and refused when their timestamp is further off than the tolerance.
    processor_webhook_secret: SecretStr = SecretStr(DEVELOPMENT_WEBHOOK_SECRET)
    webhook_tolerance_seconds: int = Field(default=300, gt=0)
    # The Idempotency-Key fingerprint of a payment is an HMAC with this key (the body holds the
    # card number); only payment_service holds it. Production refuses the development one.
    idempotency_fingerprint_key: SecretStr = SecretStr(DEVELOPMENT_FINGERPRINT_KEY)
    # Production refuses to start when the processor says it is the simulator, unless this says
    # so explicitly (a staging deployment that must never charge a card).
    allow_simulated_processor: bool = False
    outbox_interval_seconds: float = Field(default=0.5, gt=0)
    stale_interval_seconds: float = Field(default=15.0, gt=0)
    # A payment still pending after this was cut short (its process died mid-charge, or the
    # processor never decided): it fails and its charge is voided.
    stale_after_seconds: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _secrets_set(self) -> Settings:
        refuse_in_production(
            self, self.processor_webhook_secret.get_secret_value().startswith(
                DEVELOPMENT_PLACEHOLDER),
            "PAYMENT_PROCESSOR_WEBHOOK_SECRET must be set in production (the processor's "
            "webhook signing secret)")
        key = self.idempotency_fingerprint_key.get_secret_value()
        if len(key) < MIN_FINGERPRINT_KEY_LENGTH:
            raise ValueError("PAYMENT_IDEMPOTENCY_FINGERPRINT_KEY must be at least "
                             f"{MIN_FINGERPRINT_KEY_LENGTH} characters")
        refuse_in_production(self, key.startswith(DEVELOPMENT_PLACEHOLDER),
                             "PAYMENT_IDEMPOTENCY_FINGERPRINT_KEY must be set in production (a "
                             "secret of payment_service's own)")
        return self

    def fingerprint_key(self) -> bytes:
        return self.idempotency_fingerprint_key.get_secret_value().encode()


@lru_cache
def get_settings() -> Settings:
    return Settings()
