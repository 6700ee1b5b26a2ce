"""Settings refuse unsafe development defaults in production, and treat empty variables as unset."""

from __future__ import annotations

import pytest
from pydantic_settings import SettingsConfigDict

from shared.settings import DatabaseSettingsMixin, ServiceSettings


class DemoSettings(ServiceSettings, DatabaseSettingsMixin):
    model_config = SettingsConfigDict(env_prefix="DEMO_", extra="ignore", frozen=True)

    database_url: str = "mysql+asyncmy://root@127.0.0.1:3306/preorder_demo"
    mail_user: str | None = None


def test_production_refuses_a_passwordless_database(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("APP_ENV", "ENVIRONMENT", "DEMO_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="password"):
        DemoSettings(environment="production")
    production = DemoSettings(environment="production",
                              database_url="mysql+asyncmy://demo:s3cret@db:3306/preorder_demo")
    assert production.is_production()
    assert DemoSettings().environment == "development"


def test_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_MAIL_USER", "")
    monkeypatch.setenv("APP_ENV", "test")
    settings = DemoSettings()
    assert settings.mail_user is None
    assert settings.environment == "test"
