"""Every table of product_service on one metadata: what migrations/env.py and the drift test see.

A domain that adds a models module adds its import here, so autogenerate can never miss it.
"""

from __future__ import annotations

from product_service.db import Base
from product_service.products import models as products_models

metadata = Base.metadata

__all__ = ["metadata", "products_models"]
