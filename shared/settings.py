"""Settings bases: every app subclasses one with its own env prefix (USER_, ORDER_, ...) and
states nothing else in its model_config; the rest is inherited from here."""

from __future__ import annotations

import ipaddress
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from shared.identity_keys import (
    DEVELOPMENT_KEY_IDS,
    IdentitySigner,
    IdentityVerifier,
    parse_private_key,
    parse_public_keys,
)

Environment = Literal["development", "test", "production"]
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
    # This app's own Ed25519 private key for the forwarded identity (shared.identity_keys),
    # read with the app's prefix (GATEWAY_IDENTITY_PRIVATE_KEY, ORDER_IDENTITY_PRIVATE_KEY, ...):
    # the gateway signs forwarded requests with it, a service its internal calls. Only apps that
    # sign need one (the gateway and the services that call others, shared.identity_keys.SIGNERS).
    identity_private_key: SecretStr | None = None
    # The public keys of every signer, one unprefixed variable for all processes: a JSON object
    # {"gateway": ["<base64url>", ...], "order_service": [...]} (two keys of a signer during a
    # rotation's overlap). Optional here so that tools which only read a database URL
    # (migrations) run without it; an app refuses to start without it (identity_verifier()).
    identity_public_keys: str | None = Field(
        default=None, validation_alias=AliasChoices("IDENTITY_PUBLIC_KEYS")
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

    def identity_signer(self, caller: str) -> IdentitySigner:
        if self.identity_private_key is None:
            raise RuntimeError(
                f"{self.model_config.get('env_prefix', '')}IDENTITY_PRIVATE_KEY is not set: this "
                "app signs what it sends with a key of its own (make run generates one into "
                ".data/identity-keys; make keys writes them into .env)")
        return IdentitySigner(caller,
                              parse_private_key(self.identity_private_key.get_secret_value()))

    def identity_verifier(self, audience: str) -> IdentityVerifier:
        if self.identity_public_keys is None:
            raise RuntimeError(
                "IDENTITY_PUBLIC_KEYS is not set: every app checks the signatures it receives "
                "against the signers' public keys (make run generates them into "
                ".data/identity-keys; make keys writes them into .env)")
        return IdentityVerifier(parse_public_keys(self.identity_public_keys), audience=audience)

    @model_validator(mode="after")
    def _identity_keys_usable(self) -> ServiceSettings:
        private = self.identity_private_key
        if private is not None:
            parse_private_key(private.get_secret_value())  # a malformed key fails at start
        published: set[str] = set()
        if self.identity_public_keys is not None:
            published = set(parse_public_keys(self.identity_public_keys)) & DEVELOPMENT_KEY_IDS
        refuse_in_production(self, bool(published),
                             "IDENTITY_PUBLIC_KEYS lists a published development key "
                             "(deploy/development.env): anyone could sign with it.")
        refuse_in_production(self, self.identity_public_keys is None,
                             "IDENTITY_PUBLIC_KEYS must be set in production: without it no "
                             "service can tell the gateway's requests from anyone else's.")
        refuse_in_production(self, private is not None
                             and private.get_secret_value().startswith(DEVELOPMENT_PLACEHOLDER),
                             "the identity private key is a published development key: "
                             "production takes a key of its own from the secret store.")
        return self


class InternalListenerSettings(ServiceSettings):
    """A service the others call during an opening's crowd (order_service): a second listening
    socket for their calls (shared/internal_listener.py), read with the service's prefix
    (ORDER_INTERNAL_PORT, ...); off when no port is set. Its own accept queue: the crowd's
    new connections on the public port do not hold back a payment's call for its order's
    lease. The callers name that port in their URL of the service."""

    internal_host: str = "127.0.0.1"
    internal_port: int | None = Field(default=None, ge=0, le=65535)


class DatastoreSettings(ServiceSettings):
    """A service with its own MySQL schema and a Redis."""

    database_url: str
    # Connections for transactions (as many again under load, each kept once opened), and for
    # plain reads. Ten of each keep a MySQL busy; more would only queue inside it, and six
    # services with more would pass its default max_connections (151).
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
