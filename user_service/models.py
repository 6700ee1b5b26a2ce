"""Every table of user_service on one metadata: what migrations/env.py and the drift test see.

A domain that adds a models module adds its import here, so autogenerate can never miss it.
"""

from __future__ import annotations

from user_service.auth import models as auth_models
from user_service.db import Base
from user_service.roles import models as roles_models
from user_service.users import models as users_models

metadata = Base.metadata

__all__ = ["auth_models", "metadata", "roles_models", "users_models"]
