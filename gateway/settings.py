"""Gateway settings, read from GATEWAY_* environment variables."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from shared.contracts import JWT_AUDIENCE, JWT_ISSUER
from shared.services import SERVICES, service
from shared.settings import ServiceSettings, refuse_passwordless_redis


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_")

    redis_url: str = "redis://127.0.0.1:6379/0"
    # redis_url is one node of a Redis Cluster (GATEWAY_REDIS_CLUSTER=true).
    redis_cluster: bool = False
    # GATEWAY_<NAME>_SERVICE_URL, one per service of shared.services (a test holds the two in
    # step); the defaults are where `make run` puts each service.
    user_service_url: str = service("user").local_url
    product_service_url: str = service("product").local_url
    order_service_url: str = service("order").local_url
    payment_service_url: str = service("payment").local_url
    stock_service_url: str = service("stock").local_url
    social_service_url: str = service("social").local_url

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
    # Pooled connections per upstream, all its replicas together. At an opening the crowd
    # waits here for them, in arrival order, and whoever still waits when the product sells
    # out is answered at the edge (proxy.py, shared/in_order.py last_look); more of them only
    # lengthen order_service's queue of requests each place's decision (and each payment's
    # lease) waits behind: keep gateway processes times this near what order_service decides at
    # once (ORDER_RESERVES_IN_FLIGHT_PER_PRODUCT). make load, 2,000 buyers: final answers' p99
    # 1.04 to 1.21 s with 32, 1.27 to 1.34 s with 128. At 20,000 buyers over three gateways
    # the opening goes one of two ways with either (docs/performance.md).
    max_connections_per_upstream: int = Field(default=32, ge=1)
    # Long polls (a ticket's ?wait=) have a pool of their own per upstream (upstreams.py):
    # each holds its connection for up to its wait, while its service holds only a future.
    max_held_connections_per_upstream: int = Field(default=128, ge=1)
    # Streamed routes (/live) have a pool of their own, so open streams never take the
    # connections of ordinary requests; past this many open streams, 503 with Retry-After.
    max_open_streams: int = Field(default=20_000, gt=0)
    # A stream whose upstream sends nothing this long (it sends a comment every 15 s) is ended
    # (a shared one is opened again); there is no total timeout on a stream. A client of a
    # shared stream whose write has waited this long (it stopped reading) is dropped.
    stream_idle_timeout_seconds: float = Field(default=45.0, gt=0)
    # Final states of resources services publish for their owners' reads (answered tickets,
    # shared/edge_finals.py): at most this many held, the oldest forgotten first (then only
    # forwarded). A few hundred bytes each.
    edge_finals_max_held: int = Field(default=200_000, ge=0)
    # Such a resource's stream (a ticket's /events) held here while its final state is
    # pending, when the service says it will publish it (shared/edge_finals.py); false: always
    # relayed. Streams opened right after their place was taken start from its published
    # pending state, without a read at order_service: at make load's 2,000 buyers the final
    # answers' p99 fell from 1.9-2.2 s to 1.1-1.2 s (docs/performance.md).
    edge_held_streams: bool = True
    # POST /api/v1/orders and POST /api/v1/payments (each counted apart): at most this many per
    # user and per client network in a fixed window, else 429 rate_limited (0: no such limit).
    # The network limit is for many accounts behind one address range, set well above what a
    # crowd behind one office or carrier NAT sends (a load test from one machine is one network).
    rate_limit_window_seconds: float = Field(default=10.0, gt=0)
    rate_limit_per_user: int = Field(default=10, ge=0)
    rate_limit_per_network: int = Field(default=3_000, ge=0)
    rate_limit_ipv4_prefix: int = Field(default=24, ge=8, le=32)
    rate_limit_ipv6_prefix: int = Field(default=48, ge=16, le=128)
    cors_origins: list[str] = Field(default_factory=list)
    # The networks (CIDR, e.g. ["10.0.0.0/24"]) of the proxies in front of the gateway: only
    # a peer inside one is believed about the client's address (X-Forwarded-For). Empty: the
    # socket peer is the client.
    trusted_proxy_networks: list[str] = Field(default_factory=list)
    openapi_cache_seconds: float = 30.0
    # /readyz asks every service's /readyz: its outcome is reused this long, so a crowd asking
    # the public port costs one round.
    readiness_cache_seconds: float = Field(default=2.0, ge=0)
    # GET /metrics is served here, never on the public port (None: not served). Bind it to an
    # address only the scraper reaches (compose: the internal network, port not published).
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=None, ge=0, le=65535)

    @field_validator("trusted_proxy_networks")
    @classmethod
    def _networks(cls, networks: list[str]) -> list[str]:
        for network in networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as error:
                raise ValueError(f"not a network: {network!r}") from error
        return networks

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        refuse_passwordless_redis(self, self.redis_url)
        return self

    def upstreams(self) -> dict[str, str]:
        """Base URL of every service, by its short name (the route table's `service`)."""
        return {app.name: getattr(self, f"{app.name}_service_url") for app in SERVICES}


@lru_cache
def get_settings() -> Settings:
    return Settings()
