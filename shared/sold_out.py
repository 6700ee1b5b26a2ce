"""A sold-out answer remembered for a fraction of a second, in the process: at a sale's opening
most requests are refused, and a crowd refused a moment ago is refused again without asking.

Per product it keeps the smallest quantity refused as sold out: any request for at least that
many is refused while the memory lasts. Units that come back (an order expired or cancelled)
are buyable again once it lapses, so the memory's length bounds how late they show.
"""

from __future__ import annotations

import time


class SoldOutMemory:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._refused: dict[int, tuple[int, float]] = {}

    def refuses(self, product_id: int, quantity: int) -> bool:
        entry = self._refused.get(product_id)
        if entry is None:
            return False
        smallest, until = entry
        if time.monotonic() >= until:
            del self._refused[product_id]
            return False
        return quantity >= smallest

    def remember(self, product_id: int, quantity: int) -> None:
        if self.seconds <= 0:
            return
        entry = self._refused.get(product_id)
        smallest = min(quantity, entry[0]) if entry else quantity
        self._refused[product_id] = (smallest, time.monotonic() + self.seconds)

    def forget(self, product_id: int) -> None:
        """Units came back through this process: no need to wait for the memory to lapse."""
        self._refused.pop(product_id, None)
