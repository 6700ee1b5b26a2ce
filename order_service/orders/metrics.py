"""What order_service's line gauge reads from Redis when /metrics is scraped: the products with a
line (at most MAX_PRODUCTS_SHOWN of them) and, in one pipeline, how many places wait in each."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from order_service.orders.scripts import LineKeys, LineScripts
from shared.sale_metrics import LINE_LENGTH, MAX_PRODUCTS_SHOWN, Reader, Samples


def line_length_reader(scripts: LineScripts) -> Reader:
    async def read() -> Mapping[str, Samples]:
        products = sorted(await scripts.open_lines())[:MAX_PRODUCTS_SHOWN]
        if not products:
            return {LINE_LENGTH: {}}
        async with scripts.redis.pipeline(transaction=False) as pipe:
            for product_id in products:
                pipe.zcard(LineKeys.of(product_id).waiting)
            replies: list[Any] = await pipe.execute()
        return {LINE_LENGTH: {(str(product_id),): float(waiting)
                              for product_id, waiting in zip(products, replies, strict=True)}}

    return read
