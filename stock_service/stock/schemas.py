"""Request and response bodies of the public stock routes (internal bodies: shared.internal.stock)."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field

from shared.sale_window import SaleState
from shared.schemas import ApiModel, RequestModel


class StockLevel(ApiModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "product_id": 7, "remaining": 198, "sale_state": "open",
    }]})

    product_id: int
    remaining: int
    sale_state: SaleState


class StockUpdate(RequestModel):
    stock: Annotated[int, Field(ge=0, le=1_000_000_000, strict=True)]
