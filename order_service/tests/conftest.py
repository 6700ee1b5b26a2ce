"""order_service's tests run against the sale's services as processes (tests/sale.py)."""

from __future__ import annotations

from order_service.tests.sale import engines, http, sale

__all__ = ["engines", "http", "sale"]
