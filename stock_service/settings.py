"""stock_service settings, read from STOCK_* environment variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import DatastoreSettings


class Settings(DatastoreSettings):
    model_config = SettingsConfigDict(env_prefix="STOCK_")

    database_url: str = "mysql+asyncmy://root@127.0.0.1:3306/preorder_stock"
    # At the opening most reserves are refused: a product refused as sold out is refused again
    # for this long without a Lua call (units that come back show this much later at most).
    sold_out_memory_seconds: float = Field(default=0.1, ge=0)
    # The public stock view of a product is read from Redis at most once per this long per
    # process (a crowd refreshing the page at the opening); the sale state is still judged at
    # the moment of each answer, by Redis's clock.
    view_memory_seconds: float = Field(default=0.1, ge=0)
    # How often Redis's live state is compared with the ledger (and repaired where it differs).
    reconcile_interval_seconds: float = Field(default=2.0, gt=0)
    # An unpaid hold whose reserve named no deadline gives its units back after this.
    hold_ttl_seconds: int = Field(default=900, gt=0)
    # Unpaid holds past their deadline and this grace are released by stock_service itself,
    # looked for this often: the last resort for a hold its order service forgot. The grace
    # outlasts a payment begun just before the deadline (its lease, 30 s) with room to spare,
    # so the order's own expiry always decides first.
    expired_hold_grace_seconds: float = Field(default=300.0, ge=0)
    expired_hold_interval_seconds: float = Field(default=5.0, gt=0)
    # /live streams: events per product at most once per this long (coalesced), and a comment
    # line after this long without one, so idle connections stay open.
    live_min_interval_seconds: float = Field(default=0.1, ge=0)
    live_heartbeat_seconds: float = Field(default=15.0, gt=0)
    # The gateway's sold-out answer for POST /api/v1/orders lives this long unless refreshed
    # (a third of it): what a lost withdrawal can cost at most.
    edge_answer_ttl_seconds: float = Field(default=5.0, gt=0)
    # ... refreshed for at most this long after the product sold out; then order_service
    # answers the stragglers (the opening's crowd is long gone).
    edge_answer_refresh_window_seconds: float = Field(default=1800.0, gt=0)


@lru_cache
def get_settings() -> Settings:
    return Settings()
