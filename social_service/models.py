"""Every table of social_service on one metadata: what migrations/env.py and the drift test see.

A domain that adds a models module adds its import here, so autogenerate can never miss it.
(No domain yet: the tables arrive with it.)
"""

from __future__ import annotations

from social_service.db import Base

metadata = Base.metadata

__all__ = ["metadata"]
