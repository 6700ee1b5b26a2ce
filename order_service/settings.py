"""order_service settings, read from ORDER_* environment variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.services import service
from shared.settings import DatastoreSettings, InternalListenerSettings


class Settings(DatastoreSettings, InternalListenerSettings):
    model_config = SettingsConfigDict(env_prefix="ORDER_")

    database_url: str = "mysql+asyncmy://root@127.0.0.1:3306/preorder_order"
    stock_service_url: str = service("stock").local_url
    payment_service_url: str = service("payment").local_url
    # How long an unpaid order holds its units (ORDER_PAYMENT_TTL_SECONDS, the contract's name).
    payment_ttl_seconds: int = Field(default=600, gt=0)
    # How long a payment may take once it has begun; the order is not expired under it.
    payment_lease_seconds: float = Field(default=30.0, gt=0)
    # Calls to stock_service and payment_service give up after this (then 503, or retried).
    call_timeout_seconds: float = Field(default=5.0, gt=0)
    # A POST /orders is answered within this, whatever its waits (a reserve slot, the reserve,
    # the insert) would add up to: keep it below the gateway's upstream timeout (10 s), so the
    # gateway never gives up on an order still being made.
    create_budget_seconds: float = Field(default=8.0, gt=0)
    # A product refused as sold out is refused again without asking for this long.
    sold_out_memory_seconds: float = Field(default=0.25, ge=0)
    # At most this many reserves of one product in flight to stock_service from this process;
    # the rest queue (for a share of create_budget_seconds) and may be refused by the memory
    # above.
    reserves_in_flight_per_product: int = Field(default=64, ge=1)
    # The line of an opening (docs/line.md): at most this many places wait per product; past
    # it POST /orders is 429 rate_limited.
    line_max_waiting: int = Field(default=50_000, ge=1)
    # A ticket is kept this long after its answer (the contract says at least 10 minutes).
    line_keep_seconds: float = Field(default=900.0, ge=600)
    # An admitted place whose lease ran out (its replica died, or stalled longer) is admitted
    # again; the replica deciding it renews the lease every sweep (line_sweep_interval_seconds),
    # so keep it a few sweeps long.
    line_lease_seconds: float = Field(default=6.0, gt=0)
    # A ticket's answer is published for the gateway to give its owner's reads of it for this
    # long (shared/edge_finals.py); 0: not published, every read reaches this service.
    line_edge_finals_seconds: float = Field(default=60.0, ge=0)
    # At most this many places of one product are being decided at once, across every replica
    # (straight-on requests included): beyond them, a request takes its place in the line,
    # admitted in arrival order as decisions end.
    line_max_deciding: int = Field(default=64, ge=1)
    # With this many units of a product left or fewer (as stock_service's levels tell, or
    # before any level was heard), one process at a time admits its line, in arrival order:
    # two processes deciding neighbouring places race for the last units. With more left,
    # every process with free slots admits places and decides them side by side.
    line_one_drainer_below_units: int = Field(default=256, ge=0)
    # A request waits until its arrival stamp is this old before it joins the line or goes
    # straight on, so that one stamped earlier but delayed on its way here (a gateway busy with
    # a burst reorders it by a fraction of a second) still comes before it. 0: no wait; the
    # line then orders only the requests that have reached order_service.
    line_settle_seconds: float = Field(default=0.0, ge=0, le=5)
    # Retry-After of a 202 (when to look at the ticket again) and of the line's 429.
    line_retry_after_seconds: int = Field(default=1, ge=1)
    # How often every process looks for lines to drain (places left by a replica that died).
    line_sweep_interval_seconds: float = Field(default=2.0, gt=0)
    # Loops: expiry (on time, so often), effects still owed, holds no order was made for.
    expiry_interval_seconds: float = Field(default=0.5, gt=0)
    settle_interval_seconds: float = Field(default=2.0, gt=0)
    orphan_interval_seconds: float = Field(default=15.0, gt=0)
    orphan_hold_after_seconds: float = Field(default=60.0, gt=0)


@lru_cache
def get_settings() -> Settings:
    return Settings()
