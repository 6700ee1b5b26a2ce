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
    production = DemoSettings(environment="production", redis_url="redis://:pw@redis:6379/0",
                              database_url="mysql+asyncmy://demo:s3cret@db:3306/preorder_demo")
    assert production.is_production()
    assert DemoSettings(environment="development").environment == "development"


def test_production_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # Forgetting APP_ENV must never run production on development defaults.
    for name in ("APP_ENV", "ENVIRONMENT", "DEMO_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="password"):
        DemoSettings()
    assert DemoSettings(database_url="mysql+asyncmy://demo:s3cret@db:3306/preorder_demo",
                        redis_url="redis://:pw@redis:6379/0").environment == "production"


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


def test_production_refuses_to_start_without_an_identity_signing_key_or_redis_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("IDENTITY_SIGNING_KEY", raising=False)
    database_url = "mysql+asyncmy://demo:s3cret@db:3306/preorder_demo"
    with pytest.raises(ValueError, match="IDENTITY_SIGNING_KEY"):
        DemoSettings(environment="production", database_url=database_url,
                     redis_url="redis://:s3cret@redis:6379/0")
    with pytest.raises(ValueError, match="Redis URL with a password"):
        DemoSettings(environment="production", identity_signing_key="k" * 32,
                     database_url=database_url, redis_url="redis://redis:6379/0")
    with pytest.raises(ValueError, match="at least 32"):
        DemoSettings(environment="development", identity_signing_key="short")
    with pytest.raises(ValueError, match="placeholder"):
        DemoSettings(environment="production", identity_signing_key="devonly-" + "k" * 32,
                     database_url=database_url, redis_url="redis://:s3cret@redis:6379/0")
    production = DemoSettings(environment="production", identity_signing_key="k" * 32,
                              database_url=database_url, redis_url="redis://:s3cret@redis:6379/0")
    assert production.identity_key() == b"k" * 32


def test_a_refused_setting_does_not_print_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_SIGNING_KEY", "the-secret-that-must-not-be-printed")
    with pytest.raises(ValueError, match="password") as refused:
        DemoSettings(environment="production")
    assert "the-secret" not in str(refused.value)


def test_production_refuses_compose_development_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    """The attack: a deployment left on docker-compose.yml's published development passwords."""
    monkeypatch.delenv("IDENTITY_SIGNING_KEY", raising=False)
    key, redis_url = "k" * 32, "redis://:s3cret@redis:6379/0"
    with pytest.raises(ValueError, match="development placeholder"):
        DemoSettings(environment="production", identity_signing_key=key, redis_url=redis_url,
                     database_url="mysql+asyncmy://demo:devonly-demo-pw@db:3306/preorder_demo")
    with pytest.raises(ValueError, match="development placeholder"):
        DemoSettings(environment="production", identity_signing_key=key,
                     database_url="mysql+asyncmy://demo:s3cret@db:3306/preorder_demo",
                     redis_url="redis://demo:devonly-redis-pw@redis:6379/0")
    development = DemoSettings(
        environment="development", redis_url="redis://:devonly-redis-pw@redis:6379/0",
        database_url="mysql+asyncmy://demo:devonly-demo-pw@db:3306/preorder_demo")
    assert not development.is_production()
