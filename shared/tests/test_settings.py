"""Settings refuse unsafe development defaults in production (the default environment), and treat
empty variables as unset."""

from __future__ import annotations

import pytest
from pydantic_settings import SettingsConfigDict

from shared.settings import DatastoreSettings


class DemoSettings(DatastoreSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_")

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
    assert DemoSettings(environment="development").environment == "development"


def test_production_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # Forgetting APP_ENV must never run production on development defaults.
    for name in ("APP_ENV", "ENVIRONMENT", "DEMO_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="password"):
        DemoSettings()
    assert DemoSettings(database_url="mysql+asyncmy://demo:s3cret@db:3306/preorder_demo"
                        ).environment == "production"


def test_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_MAIL_USER", "")
    monkeypatch.setenv("APP_ENV", "test")
    settings = DemoSettings()
    assert settings.mail_user is None
    assert settings.environment == "test"


def test_a_subclass_states_only_its_prefix_and_inherits_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEMO_DATABASE_POOL_SIZE", "7")
    settings = DemoSettings(redis_url="redis://127.0.0.1:6379/3")  # by field name
    assert settings.database_pool_size == 7
    assert DemoSettings.model_config["frozen"] is True
    assert DemoSettings.model_config["env_ignore_empty"] is True
    with pytest.raises(ValueError, match="frozen"):
        settings.database_pool_size = 8  # type: ignore[misc]
