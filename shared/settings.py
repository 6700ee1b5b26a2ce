"""Settings bases: every app subclasses one with its own env prefix (USER_, ORDER_, ...) and
states nothing else in its model_config; the rest is inherited from here."""

from __future__ import annotations

import ipaddress
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

Environment = Literal["development", "test", "production"]
# An HMAC key shorter than this is guessable offline from one signed request.
MIN_IDENTITY_KEY_LENGTH = 32
# How docker-compose.yml's development defaults begin (passwords, the identity key).
DEVELOPMENT_PLACEHOLDER = "devonly-"


class ServiceSettings(BaseSettings):
    # An empty variable (SMTP_USERNAME= in a compose file) means "not set", not "the empty string".
    # validate_by_name: tests and tools build settings by field name as well as by variable.
    # hide_input_in_errors: a refused setting must not print the others (keys, passwords).
    model_config = SettingsConfigDict(
        extra="ignore", frozen=True, env_ignore_empty=True, validate_by_name=True,
        hide_input_in_errors=True,
    )

    # Shared by every process of one deployment, so it is read without the service's prefix.
    # Production by default: a forgotten APP_ENV then refuses to start on development defaults
    # (a generated key, a password-less database) instead of running production on them.
    # `make run`, the tests and compose's development defaults say `development`/`test`.
    environment: Environment = Field(
        default="production", validation_alias=AliasChoices("APP_ENV", "ENVIRONMENT")
    )
    log_level: str = Field(default="INFO", validation_alias=AliasChoices("LOG_LEVEL"))
    # The secret the gateway signs forwarded identities with and every service checks them
    # with (shared.contracts.identity_signature); one unprefixed variable for all processes.
    # Optional here so that tools which only read a database URL (migrations) run without it;
    # an app refuses to start without it (identity_key()).
    identity_signing_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("IDENTITY_SIGNING_KEY")
    )
    # Redis pub/sub channels are global across a server's databases: every channel (and the
    # keys the gateway scans for) carries this, so two deployments or test suites sharing one
    # Redis never hear each other. Shared by every process, read without the service's prefix.
    # No braces: a key's hash tag must be the product's, not the prefix's.
    pubsub_prefix: str = Field(default="preorder:", pattern=r"^[^{}\s]*$",
                               validation_alias=AliasChoices("PUBSUB_PREFIX"))

    # Addresses a service's name stands for before DNS is asked, as /etc/hosts would, as JSON:
    # {"stock.test": ["127.0.0.1", "127.0.0.2"]}. For a test system's replicas on loopback, which
    # no resolver of the machine knows; an orchestrator's DNS does this in a deployment
    # (shared/replicas.py). Shared by every process, read without the service's prefix.
    service_hosts: dict[str, list[str]] = Field(
        default_factory=dict, validation_alias=AliasChoices("SERVICE_HOSTS"))

    @field_validator("service_hosts")
    @classmethod
    def _addresses_only(cls, hosts: dict[str, list[str]]) -> dict[str, list[str]]:
        try:
            return {name: [str(ipaddress.ip_address(a)) for a in addresses]
                    for name, addresses in hosts.items()}
        except ValueError as error:
            raise ValueError(f"SERVICE_HOSTS names addresses, not names: {error}") from None

    def is_production(self) -> bool:
        return self.environment == "production"

    def identity_key(self) -> bytes:
        if self.identity_signing_key is None:
            raise RuntimeError(
                "IDENTITY_SIGNING_KEY is not set: the gateway and every service need the same "
                "secret (make run generates one into .data/; make keys writes one into .env)")
        return self.identity_signing_key.get_secret_value().encode()

    @model_validator(mode="after")
    def _identity_key_strong_enough(self) -> ServiceSettings:
        key = self.identity_signing_key
        if key is not None and len(key.get_secret_value()) < MIN_IDENTITY_KEY_LENGTH:
            raise ValueError(f"IDENTITY_SIGNING_KEY must be at least {MIN_IDENTITY_KEY_LENGTH} "
                             "characters (e.g. python -c 'import secrets; "
                             "print(secrets.token_urlsafe(32))')")
        refuse_in_production(self, key is None,
                             "IDENTITY_SIGNING_KEY must be set in production: without it no "
                             "service can tell the gateway's requests from anyone else's.")
        refuse_in_production(self, key is not None
                             and key.get_secret_value().startswith(DEVELOPMENT_PLACEHOLDER),
                             "IDENTITY_SIGNING_KEY is compose's development placeholder: "
                             "production takes a key of its own from the secret store.")
        return self


class DatastoreSettings(ServiceSettings):
    """A service with its own MySQL schema and a Redis."""

    database_url: str
    # Connections for transactions (and as many again in overflow), and for plain reads. Ten of
    # each keep a MySQL busy; more would only queue inside it, and six services with more
    # would pass its default max_connections (151).
    database_pool_size: int = Field(default=10, gt=0)
    database_read_pool_size: int = Field(default=10, gt=0)
    redis_url: str = "redis://127.0.0.1:6379/0"
    # redis_url names one node of a Redis Cluster (X_REDIS_CLUSTER=true): the client learns the
    # others from it and sends each command to the shard that owns its keys.
    redis_cluster: bool = False

    @model_validator(mode="after")
    def _no_passwordless_database_in_production(self) -> DatastoreSettings:
        # The development default is root with no password; a deployment has its own user.
        password = make_url(self.database_url).password
        if self.is_production() and not password:
            raise ValueError("production needs a database URL with a password (its own user)")
        refuse_in_production(self, str(password or "").startswith(DEVELOPMENT_PLACEHOLDER),
                             "the database password is compose's development placeholder: "
                             "production takes one of its own from the secret store")
        refuse_passwordless_redis(self, self.redis_url)
        return self


def refuse_passwordless_redis(settings: ServiceSettings, redis_url: str) -> None:
    """Redis holds what the gateway trusts (revoked sessions, throttles): in production only
    those who know its password may write there."""
    password = urlsplit(redis_url).password
    refuse_in_production(settings, not password,
                         "production needs a Redis URL with a password (redis://:pw@host/0)")
    refuse_in_production(settings, (password or "").startswith(DEVELOPMENT_PLACEHOLDER),
                         "the Redis password is compose's development placeholder: production "
                         "takes one of its own from the secret store")


def refuse_in_production(settings: ServiceSettings, condition: bool, message: str) -> None:
    """Development defaults are convenient and unsafe; refuse to start production with them."""
    if condition and settings.is_production():
        raise ValueError(message)
