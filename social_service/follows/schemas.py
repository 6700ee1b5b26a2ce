"""A follow as clients see it: the other user and when the follow began."""

from __future__ import annotations

from shared.schemas import ApiModel, UtcDatetime


class FollowOut(ApiModel):
    user_id: int
    followed_at: UtcDatetime
