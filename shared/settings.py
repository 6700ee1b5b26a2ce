"""Settings bases: every app subclasses one with its own env prefix (USER_, ORDER_, ...) and
states nothing else in its model_config; the rest is inherited from here."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

Environment = Literal["development", "test", "production"]


class ServiceSettings(BaseSettings):
    # An empty variable (SMTP_USERNAME= in a compose file) means "not set", not "the empty string".
    # validate_by_name: tests and tools build settings by field name as well as by variable.
    model_config = SettingsConfigDict(
        extra="ignore", frozen=True, env_ignore_empty=True, validate_by_name=True
    )

    # Shared by every process of one deployment, so it is read without the service's prefix.
    # Production by default: a forgotten APP_ENV then refuses to start on development defaults
    # (a generated key, a password-less database) instead of running production on them.
    # `make run`, the tests and compose's development defaults say `development`/`test`.
    environment: Environment = Field(
        default="production", validation_alias=AliasChoices("APP_ENV", "ENVIRONMENT")
    )
    log_level: str = Field(default="INFO", validation_alias=AliasChoices("LOG_LEVEL"))

    def is_production(self) -> bool:
        return self.environment == "production"


class DatastoreSettings(ServiceSettings):
    """A service with its own MySQL schema and a Redis."""

    database_url: str
    # Connections for transactions (and as many again in overflow), and for plain reads. Ten of
    # each keep a MySQL busy; more would only queue inside it, and six services with more
    # would pass its default max_connections (151).
    database_pool_size: int = Field(default=10, gt=0)
    database_read_pool_size: int = Field(default=10, gt=0)
    redis_url: str = "redis://127.0.0.1:6379/0"

    @model_validator(mode="after")
    def _no_passwordless_database_in_production(self) -> DatastoreSettings:
        # The development default is root with no password; a deployment has its own user.
        if self.is_production() and not make_url(self.database_url).password:
            raise ValueError("production needs a database URL with a password (its own user)")
        return self


def refuse_in_production(settings: ServiceSettings, condition: bool, message: str) -> None:
    """Development defaults are convenient and unsafe; refuse to start production with them."""
    if condition and settings.is_production():
        raise ValueError(message)
