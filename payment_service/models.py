"""Every table of payment_service on one metadata: what migrations/env.py and the drift check see.

A domain that adds a models module adds its import here, so autogenerate can never miss it.
"""

from __future__ import annotations

from payment_service.db import Base
from payment_service.payments import models as payments_models

metadata = Base.metadata

__all__ = ["metadata", "payments_models"]
