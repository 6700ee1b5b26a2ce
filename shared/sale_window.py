"""A sale's state from its window: the one rule product_service and stock_service both apply.

The state is computed at the moment of the answer, never stored, so a cached product flips to
`open` at the exact second. No opening time means open from the start; no closing time, open
for good. At `sale_opens_at` exactly the sale is open; at `sale_closes_at` exactly, closed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

SaleState = Literal["scheduled", "open", "closed"]


def sale_state(opens_at: datetime | None, closes_at: datetime | None, now: datetime) -> SaleState:
    """All three naive UTC (as stored) or all aware."""
    if opens_at is not None and now < opens_at:
        return "scheduled"
    if closes_at is not None and now >= closes_at:
        return "closed"
    return "open"


def epoch_ms(value: datetime | None) -> int:
    """Naive UTC as milliseconds since the epoch (what Redis's clock is compared with); 0 = none."""
    if value is None:
        return 0
    return int((value - datetime(1970, 1, 1)).total_seconds() * 1000)


def sale_state_at_ms(opens_ms: int, closes_ms: int, now_ms: int) -> SaleState:
    """The same rule on epoch milliseconds (0 = no such bound), as the Lua scripts apply it."""
    if opens_ms and now_ms < opens_ms:
        return "scheduled"
    if closes_ms and now_ms >= closes_ms:
        return "closed"
    return "open"
