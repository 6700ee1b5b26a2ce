"""Every table of stock_service on one metadata: what migrations/env.py and the drift check see.

A domain that adds a models module adds its import here, so autogenerate can never miss it.
"""

from __future__ import annotations

from stock_service.db import Base
from stock_service.stock import models as stock_models

metadata = Base.metadata

__all__ = ["metadata", "stock_models"]
