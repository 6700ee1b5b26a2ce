"""Stock levels as stock_service publishes them (stock_service/stock/live.py), for the services
that read them too.

One message per change of a product's live state (coalesced), on `<prefix>stock-levels`:

    <product id> <active: 1 or ''> <remaining> <opens ms> <closes ms> <Redis's clock, ms>

order_service reads a product's units left from it: its line is admitted by one process at a
time only near the end of the stock (order_service/orders/drain.py).
"""

from __future__ import annotations

LEVELS_TOPIC = "stock-levels"


def parse_level(message: str) -> tuple[int, bool, int, int, int, int]:
    """(product id, active, units left, opens ms, closes ms, Redis's clock ms) of a levels
    message; ValueError if it is not one."""
    parts = message.split(" ")
    if len(parts) != 6:
        raise ValueError("not a stock level")
    product_id, active, remaining, opens, closes, now = parts
    return int(product_id), active == "1", int(remaining), int(opens), int(closes), int(now)


def remaining_of(message: str) -> tuple[int, int] | None:
    """(product id, units left) of a levels message; None if it is not one."""
    try:
        product_id, _, remaining, *_ = parse_level(message)
    except ValueError:
        return None
    return product_id, remaining
