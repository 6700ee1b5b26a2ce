"""Request and response bodies of the public stock routes (internal bodies: shared.internal.stock)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from shared.sale_window import SaleState
from shared.schemas import ApiModel, RequestModel


class StockLevel(ApiModel):
    product_id: int
    remaining: int
    sale_state: SaleState


class StockUpdate(RequestModel):
    stock: Annotated[int, Field(ge=0, le=1_000_000_000, strict=True)]
