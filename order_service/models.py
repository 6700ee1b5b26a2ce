"""Every table of order_service on one metadata: what migrations/env.py and the drift check see.

A domain that adds a models module adds its import here, so autogenerate can never miss it.
"""

from __future__ import annotations

from order_service.db import Base
from order_service.orders import models as orders_models

metadata = Base.metadata

__all__ = ["metadata", "orders_models"]
