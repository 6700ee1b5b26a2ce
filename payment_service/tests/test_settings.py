"""payment_service's settings refuse the development secrets in production."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from payment_service.settings import Settings

PRODUCTION: dict[str, Any] = {
    "environment": "production",
    "database_url": "mysql+asyncmy://payment:pw@db:3306/preorder_payment",
    "redis_url": "redis://:pw@redis:6379/0",
    "identity_signing_key": "k" * 40,
    "processor_webhook_secret": "w" * 40,
    "idempotency_fingerprint_key": "f" * 40,
}


def test_production_starts_with_secrets_of_its_own() -> None:
    assert Settings(**PRODUCTION).fingerprint_key() == b"f" * 40


@pytest.mark.parametrize("missing", ["processor_webhook_secret", "idempotency_fingerprint_key"])
def test_production_refuses_the_development_secrets(missing: str) -> None:
    settings = {name: value for name, value in PRODUCTION.items() if name != missing}
    with pytest.raises(ValidationError, match=missing.upper()[:20]):
        Settings(**settings)


def test_a_short_fingerprint_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(environment="test", idempotency_fingerprint_key="short")
