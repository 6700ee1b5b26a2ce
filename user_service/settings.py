"""user_service settings, read from USER_* environment variables (SMTP_* and MAIL_FROM unprefixed)."""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from shared.contracts import JWT_AUDIENCE, JWT_ISSUER
from shared.settings import DatastoreSettings, refuse_in_production


def _unprefixed(name: str) -> AliasChoices:
    # One mail relay serves every process of a deployment, so its variables carry no prefix.
    return AliasChoices(name)


class Settings(DatastoreSettings):
    model_config = SettingsConfigDict(env_prefix="USER_")

    database_url: str = "mysql+asyncmy://root@127.0.0.1:3306/preorder_user"
    redis_url: str = "redis://127.0.0.1:6379/0"

    # PEM of the Ed25519 key that signs access tokens. Secret, hence SecretStr: never in a repr.
    jwt_private_key: SecretStr | None = None
    # PEM bundle of retired public keys still published in the JWKS while old tokens live out.
    jwt_previous_public_keys: str | None = None
    # Development only: where a generated signing key is kept between restarts.
    jwt_key_dir: str = ".data/keys"
    jwt_issuer: str = JWT_ISSUER
    jwt_audience: str = JWT_AUDIENCE
    access_token_ttl_seconds: int = Field(default=900, gt=0)
    refresh_token_ttl_seconds: int = Field(default=2_592_000, gt=0)
    # A session ends this long after its login, however often it is refreshed (90 days).
    session_max_lifetime_seconds: int = Field(default=7_776_000, gt=0)

    verification_code_ttl_seconds: int = Field(default=600, gt=0)
    verification_max_attempts: int = Field(default=5, gt=0)
    # Wrong codes per e-mail address per day, whatever the resends and new sign-ups.
    verification_max_failures_per_day: int = Field(default=20, gt=0)
    resend_interval_seconds: int = Field(default=60, gt=0)

    # Rate limits (auth/limits.py): sign-ups and resends per client network (an IPv4 address or
    # an IPv6 /56) and per hour; verification attempts per client network per 15 minutes.
    signup_max_per_address: int = Field(default=10, gt=0)
    resend_max_per_address: int = Field(default=10, gt=0)
    # The mail guard: codes mailed per hour for everyone together (the mail provider's quota);
    # past it a code's mail waits for the next slot instead of a sign-up being refused.
    mail_max_per_hour: int = Field(default=3000, gt=0)
    mail_delayed_interval_seconds: float = Field(default=5.0, gt=0)
    verify_max_per_address: int = Field(default=30, gt=0)

    # Failed logins for one e-mail from one client address, then from one address at all.
    login_max_failures_per_email: int = Field(default=10, gt=0)
    login_max_failures_per_ip: int = Field(default=100, gt=0)
    login_failure_window_seconds: int = Field(default=900, gt=0)
    # An address past its failures lets through one password check per this interval for
    # pairs that never signed in from there (auth/throttle.py); pairs that did, go on as usual
    # for this long after their last success.
    login_slowed_interval_seconds: float = Field(default=1.0, gt=0)
    login_known_pair_seconds: int = Field(default=30 * 24 * 3600, gt=0)
    password_hash_workers: int = Field(default_factory=lambda: os.cpu_count() or 2, gt=0)
    # How often expired refresh tokens and sessions left without any are deleted.
    purge_interval_seconds: float = Field(default=3600, gt=0)
    # How often Redis is checked for lost revocations (the epoch key): the gateway refuses
    # tokens for about this long after Redis lost its data.
    revocation_watch_interval_seconds: float = Field(default=1.0, gt=0)

    smtp_host: str = Field(default="127.0.0.1", validation_alias=_unprefixed("SMTP_HOST"))
    smtp_port: int = Field(default=1025, validation_alias=_unprefixed("SMTP_PORT"))
    smtp_username: str | None = Field(default=None, validation_alias=_unprefixed("SMTP_USERNAME"))
    smtp_password: SecretStr | None = Field(
        default=None, validation_alias=_unprefixed("SMTP_PASSWORD")
    )
    smtp_starttls: bool = Field(default=False, validation_alias=_unprefixed("SMTP_STARTTLS"))
    mail_from: str = Field(
        default="Preorder <no-reply@preorder.local>", validation_alias=_unprefixed("MAIL_FROM")
    )
    smtp_timeout_seconds: float = Field(
        default=10, gt=0, validation_alias=_unprefixed("SMTP_TIMEOUT_SECONDS")
    )

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        refuse_in_production(
            self,
            self.jwt_private_key is None,
            "USER_JWT_PRIVATE_KEY must be set in production: a generated development key would "
            "differ per host and lose every session on redeploy.",
        )
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
