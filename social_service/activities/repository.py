"""Every SQL statement that writes the activity log. (The stream is read in feed/.)"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert

from shared.repository import Repository
from social_service.activities.models import Activity, ActivityType


class ActivitiesRepository(Repository):
    """Writes only, on the request session: an activity goes in the transaction of its action."""

    async def record(
        self,
        type_: ActivityType,
        *,
        actor_id: int,
        target_id: int,
        owner_id: int | None,
        created_at: datetime,
        post_id: int | None = None,
        comment_id: int | None = None,
    ) -> None:
        await self.session.execute(insert(Activity).values(
            type=type_.value, actor_id=actor_id, target_id=target_id, owner_id=owner_id,
            post_id=post_id, comment_id=comment_id, created_at=created_at,
        ))

    async def remove(self, type_: ActivityType, *, actor_id: int, target_id: int) -> None:
        """What an unlike or an unfollow undoes: the log shows only what still holds."""
        await self.session.execute(delete(Activity).where(
            Activity.type == type_.value, Activity.target_id == target_id,
            Activity.actor_id == actor_id,
        ))
