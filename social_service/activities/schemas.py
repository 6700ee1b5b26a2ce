"""An activity as clients see it."""

from __future__ import annotations

from shared.schemas import ApiModel, UtcDatetime
from social_service.activities.models import ActivityType, TargetType


class ActivityOut(ApiModel):
    id: int
    actor_id: int
    type: ActivityType
    target_type: TargetType
    target_id: int
    created_at: UtcDatetime
