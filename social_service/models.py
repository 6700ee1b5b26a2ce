"""Every table of social_service on one metadata: what migrations/env.py and the drift test see.

A domain that adds a models module adds its import here, so autogenerate can never miss it.
"""

from __future__ import annotations

from social_service.activities import models as activities_models
from social_service.comments import models as comments_models
from social_service.db import Base
from social_service.follows import models as follows_models
from social_service.posts import models as posts_models

metadata = Base.metadata

__all__ = ["activities_models", "comments_models", "follows_models", "metadata", "posts_models"]
