"""Settings refuse unsafe development defaults in production (the default environment), and treat
empty variables as unset."""

from __future__ import annotations

import importlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic_settings import SettingsConfigDict

from shared.identity_keys import key_id, private_key_text, public_keys_document
from shared.services import SERVICES
from shared.settings import DatastoreSettings

KEY = Ed25519PrivateKey.generate()
PRIVATE_KEY = private_key_text(KEY)
PUBLIC_KEYS = public_keys_document({"gateway": [KEY.public_key()]})


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


def test_production_refuses_to_start_without_identity_keys_or_redis_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("IDENTITY_PUBLIC_KEYS", raising=False)
    database_url = "mysql+asyncmy://demo:s3cret@db:3306/preorder_demo"
    with pytest.raises(ValueError, match="IDENTITY_PUBLIC_KEYS"):
        DemoSettings(environment="production", database_url=database_url,
                     redis_url="redis://:s3cret@redis:6379/0")
    with pytest.raises(ValueError, match="Redis URL with a password"):
        DemoSettings(environment="production", identity_public_keys=PUBLIC_KEYS,
                     database_url=database_url, redis_url="redis://redis:6379/0")
    with pytest.raises(ValueError, match="32 bytes"):
        DemoSettings(environment="development", identity_private_key="short")
    with pytest.raises(ValueError, match="not JSON"):
        DemoSettings(environment="development", identity_public_keys="gateway:abc")
    with pytest.raises(ValueError, match="development key"):
        DemoSettings(environment="production", identity_private_key="devonly-" + PRIVATE_KEY,
                     identity_public_keys=PUBLIC_KEYS, database_url=database_url,
                     redis_url="redis://:s3cret@redis:6379/0")
    production = DemoSettings(environment="production", identity_private_key=PRIVATE_KEY,
                              identity_public_keys=PUBLIC_KEYS, database_url=database_url,
                              redis_url="redis://:s3cret@redis:6379/0")
    assert production.identity_signer("gateway").kid == key_id(KEY.public_key())
    assert production.identity_verifier("demo_service").audience == "demo_service"
    without = DemoSettings(environment="development")
    with pytest.raises(RuntimeError, match="DEMO_IDENTITY_PRIVATE_KEY"):
        without.identity_signer("demo_service")


def test_a_refused_setting_does_not_print_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_IDENTITY_PRIVATE_KEY", PRIVATE_KEY)
    with pytest.raises(ValueError, match="password") as refused:
        DemoSettings(environment="production")
    assert PRIVATE_KEY not in str(refused.value)


def test_production_refuses_compose_development_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    """The attack: a deployment left on docker-compose.yml's published development passwords."""
    redis_url = "redis://:s3cret@redis:6379/0"
    with pytest.raises(ValueError, match="development placeholder"):
        DemoSettings(environment="production", identity_public_keys=PUBLIC_KEYS, redis_url=redis_url,
                     database_url="mysql+asyncmy://demo:devonly-demo-pw@db:3306/preorder_demo")
    with pytest.raises(ValueError, match="development placeholder"):
        DemoSettings(environment="production", identity_public_keys=PUBLIC_KEYS,
                     database_url="mysql+asyncmy://demo:s3cret@db:3306/preorder_demo",
                     redis_url="redis://demo:devonly-redis-pw@redis:6379/0")
    development = DemoSettings(
        environment="development", redis_url="redis://:devonly-redis-pw@redis:6379/0",
        database_url="mysql+asyncmy://demo:devonly-demo-pw@db:3306/preorder_demo")
    assert not development.is_production()


@pytest.mark.parametrize("package", [app.package for app in SERVICES] + ["gateway"])
def test_every_apps_settings_take_an_empty_variable_as_unset(
        package: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Compose passes its optional settings empty (`SERVICE_HOSTS: ${SERVICE_HOSTS:-}`): an app
    # whose Settings lost the shared config (one more base class is enough) refused to start.
    settings_class = importlib.import_module(f"{package}.settings").Settings
    prefix = settings_class.model_config.get("env_prefix", "")
    monkeypatch.setenv("APP_ENV", "test")
    monkeypatch.setenv("SERVICE_HOSTS", "")
    monkeypatch.setenv(f"{prefix}INTERNAL_PORT", "")
    assert settings_class.model_config["env_ignore_empty"] is True
    assert settings_class.model_config["frozen"] is True
    assert settings_class().service_hosts == {}
