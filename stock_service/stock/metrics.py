"""What stock_service's per-product gauges read from Redis when /metrics is scraped: one
pipeline of HMGETs over the products changed most recently through this process (a bounded
set, shared/sale_metrics.py RecentProducts), never a scan of the keyspace."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.sale_metrics import (
    STOCK_HELD,
    STOCK_REMAINING,
    STOCK_SOLD,
    STOCK_TOTAL,
    Reader,
    RecentProducts,
    Samples,
)
from stock_service.stock.scripts import ProductKeys, StockScripts

_FIELDS = {STOCK_TOTAL: "total", STOCK_REMAINING: "remaining", STOCK_HELD: "held",
           STOCK_SOLD: "sold"}


def stock_levels_reader(scripts: StockScripts, products: RecentProducts) -> Reader:
    async def read() -> Mapping[str, Samples]:
        shown = list(products)
        samples: dict[str, dict[tuple[str, ...], float]] = {name: {} for name in _FIELDS}
        if not shown:
            return samples
        async with scripts.redis.pipeline(transaction=False) as pipe:
            for product_id in shown:
                pipe.hmget(ProductKeys.of(product_id).meta, *_FIELDS.values())
            replies: list[Any] = await pipe.execute()
        for product_id, reply in zip(shown, replies, strict=True):
            if reply[0] is None:  # unregistered, or Redis lost it (the reconciler rebuilds)
                continue
            for name, value in zip(_FIELDS, reply, strict=True):
                samples[name][(str(product_id),)] = float(value or 0)
        return samples

    return read
