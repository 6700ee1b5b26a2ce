"""Stock levels as stock_service publishes them (stock_service/stock/live.py), for the services
that read them too.

One message per change of a product's live state (coalesced), on `<prefix>stock-levels`:

    <product id> <active: 1 or ''> <remaining> <opens ms> <closes ms> <Redis's clock, ms>

order_service reads a product's units left from it: its line is admitted by one process at a
time only near the end of the stock (order_service/orders/drain.py).
"""

from __future__ import annotations

LEVELS_TOPIC = "stock-levels"


def remaining_of(message: str) -> tuple[int, int] | None:
    """(product id, units left) of a levels message; None if it is not one."""
    parts = message.split(" ")
    if len(parts) != 6:
        return None
    try:
        return int(parts[0]), int(parts[2])
    except ValueError:
        return None
