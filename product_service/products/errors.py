"""The problems the product routes answer with; `code` is what clients switch on."""

from __future__ import annotations

from typing import Any, cast

from shared.errors import Forbidden, InvalidState, NotFound, ProblemError, ServiceUnavailable


class ProductNotFound(NotFound):
    title = "Product not found"


class NotTheSeller(Forbidden):
    title = "Only the product's seller may change it"


class SaleStarted(InvalidState):
    title = "The sale has opened; its window, price and purchase limit are fixed"


class StockUnavailable(ServiceUnavailable):
    """stock_service did not take the change: nothing changed on either side."""

    title = "Stock service unavailable"

    def __init__(self) -> None:
        super().__init__("The stock service did not answer; nothing was changed. Retry shortly.",
                         headers={"Retry-After": "1"})


_FORWARDED: dict[tuple[int, str, str], type[ProblemError]] = {}


def forwarded_problem(status: int, body: Any) -> ProblemError:
    """stock_service's refusal (a 4xx problem document), answered to our client as it was."""
    document = body if isinstance(body, dict) else {}
    code = str(document.get("code") or "bad_request")
    title = str(document.get("title") or "Refused by the stock service")
    key = (status, code, title)
    kind = _FORWARDED.get(key)
    if kind is None:
        # A class per (status, code, title): ProblemError carries them as class attributes.
        kind = cast(type[ProblemError], type("StockRefusal", (ProblemError,),
                                             {"status": status, "code": code, "title": title}))
        _FORWARDED[key] = kind
    return kind(str(document.get("detail") or title))
