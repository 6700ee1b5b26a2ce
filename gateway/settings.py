"""Gateway settings, read from GATEWAY_* environment variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.contracts import JWT_AUDIENCE, JWT_ISSUER
from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", frozen=True)

    redis_url: str = "redis://127.0.0.1:6379/0"
    user_service_url: str = "http://127.0.0.1:8001"
    product_service_url: str = "http://127.0.0.1:8002"
    order_service_url: str = "http://127.0.0.1:8003"
    payment_service_url: str = "http://127.0.0.1:8004"
    stock_service_url: str = "http://127.0.0.1:8005"
    social_service_url: str = "http://127.0.0.1:8006"

    jwt_issuer: str = JWT_ISSUER
    jwt_audience: str = JWT_AUDIENCE
    jwt_leeway_seconds: int = Field(default=10, ge=0, le=30)
    # An unknown kid triggers a JWKS refetch at most this often, so forged kids cannot
    # turn the gateway into a flood against user_service.
    jwks_refetch_interval_seconds: float = 10.0
    # Refetched this often regardless, so a withdrawn key stops being trusted.
    jwks_max_age_seconds: float = Field(default=300.0, gt=0)

    connect_timeout_seconds: float = 1.0
    upstream_timeout_seconds: float = 10.0
    max_body_bytes: int = 1024 * 1024
    # Responses are buffered whole (they are small JSON); anything past this is a broken service.
    max_response_bytes: int = 16 * 1024 * 1024
    # The whole request body must arrive within this, so slow senders cannot hold connections.
    body_timeout_seconds: float = 30.0
    max_connections_per_upstream: int = 512
    cors_origins: list[str] = Field(default_factory=list)
    trusted_proxy_count: int = Field(default=0, ge=0, le=10)
    openapi_cache_seconds: float = 30.0

    def upstreams(self) -> dict[str, str]:
        return {
            "user": self.user_service_url,
            "product": self.product_service_url,
            "order": self.order_service_url,
            "payment": self.payment_service_url,
            "stock": self.stock_service_url,
            "social": self.social_service_url,
        }


@lru_cache
def get_settings() -> Settings:
    return Settings()
