"""Request and response bodies of the product routes (API.md, "Products and stock")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from shared.contracts import MAX_ID
from shared.sale_window import SaleState
from shared.schemas import ApiModel, RequestModel, UtcDatetime, UtcDatetimeIn

Kind = Literal["general", "preorder"]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_not_blank)]
Description = Annotated[str, Field(max_length=5000)]
Price = Annotated[int, Field(ge=0, le=MAX_ID, strict=True)]
Stock = Annotated[int, Field(ge=0, le=1_000_000_000, strict=True)]
# Units of the product one user may hold or buy in all; null: no limit.
LimitPerUser = Annotated[int, Field(ge=1, le=1_000_000_000, strict=True)]


def check_window(kind: str, opens_at: datetime | None, closes_at: datetime | None) -> str | None:
    """What is wrong with a product's sale window, or None. The one rule for creation and
    change alike."""
    if kind == "preorder" and opens_at is None:
        return "a preorder product needs sale_opens_at"
    if kind == "general" and opens_at is not None:
        return "a general product is on sale from its creation: it takes no sale_opens_at"
    if opens_at is not None and closes_at is not None and closes_at <= opens_at:
        return "sale_closes_at must be after sale_opens_at"
    return None


class ProductCreate(RequestModel):
    # The kind's rule in the schema too, so clients and fuzzers see it: a preorder needs
    # sale_opens_at, a general product takes none. (sale_closes_at after sale_opens_at is
    # checked, not expressible here.)
    model_config = ConfigDict(json_schema_extra={
        "if": {"properties": {"kind": {"const": "preorder"}}},
        "then": {"required": ["sale_opens_at"],
                 "properties": {"sale_opens_at": {"type": "string", "format": "date-time"}}},
        "else": {"properties": {"sale_opens_at": {"type": "null"}}},
        "examples": [{"name": "Mechanical keyboard, limited run", "description": "Ships in March",
                      "price": 120000, "stock": 200, "kind": "preorder",
                      "sale_opens_at": "2026-12-24T12:00:00Z", "limit_per_user": 1}],
    })

    name: Name
    description: Description
    price: Price
    stock: Stock
    kind: Kind
    sale_opens_at: UtcDatetimeIn | None = None
    sale_closes_at: UtcDatetimeIn | None = None
    limit_per_user: LimitPerUser | None = None

    @model_validator(mode="after")
    def _window_fits_the_kind(self) -> ProductCreate:
        problem = check_window(self.kind, self.sale_opens_at, self.sale_closes_at)
        if problem:
            raise ValueError(problem)
        return self


# Fields that may not be cleared with an explicit null (the others clear to "none").
_REQUIRED_IF_SENT = ("name", "description", "price")


class ProductUpdate(RequestModel):
    """Absent fields stay as they are; null clears sale_closes_at or limit_per_user."""

    # Optional but never null (the validator below): the schema shows no null for them.
    name: Name | SkipJsonSchema[None] = None
    description: Description | SkipJsonSchema[None] = None
    price: Price | SkipJsonSchema[None] = None
    sale_opens_at: UtcDatetimeIn | None = None
    sale_closes_at: UtcDatetimeIn | None = None
    limit_per_user: LimitPerUser | None = None

    @model_validator(mode="after")
    def _no_null_for_required_fields(self) -> ProductUpdate:
        nulled = [name for name in _REQUIRED_IF_SENT
                  if name in self.model_fields_set and getattr(self, name) is None]
        if nulled:
            raise ValueError(f"{', '.join(nulled)} cannot be null")
        return self

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class ProductRecord(ApiModel):
    """A product as stored: what the detail cache keeps (sale_state is added at answer time)."""

    id: int
    seller_id: int
    name: str
    description: str
    price: int
    kind: Kind
    sale_opens_at: UtcDatetime | None
    sale_closes_at: UtcDatetime | None
    limit_per_user: int | None
    created_at: UtcDatetime
    updated_at: UtcDatetime


class ProductOut(ProductRecord):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": 7, "seller_id": 42, "name": "Mechanical keyboard, limited run",
        "description": "Ships in March", "price": 120000, "kind": "preorder",
        "sale_opens_at": "2026-12-24T12:00:00Z", "sale_closes_at": "2026-12-31T23:59:59Z",
        "limit_per_user": 1,
        "sale_state": "scheduled", "created_at": "2026-12-01T09:00:00Z",
        "updated_at": "2026-12-01T09:00:00Z",
    }]})

    sale_state: SaleState
