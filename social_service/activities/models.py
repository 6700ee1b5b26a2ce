"""The activity log: one row per thing someone did (posted, commented, liked, followed), written
in the same transaction as the action itself, so the log and the state never disagree."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from social_service.db import Base, Timestamp


class ActivityType(StrEnum):
    POST_CREATED = "post_created"
    COMMENT_CREATED = "comment_created"
    POST_LIKED = "post_liked"
    COMMENT_LIKED = "comment_liked"
    FOLLOWED = "followed"


class TargetType(StrEnum):
    POST = "post"
    COMMENT = "comment"
    USER = "user"


# The target is what the verb acts on: the post or comment created or liked, the user followed.
TARGET_TYPES: dict[ActivityType, TargetType] = {
    ActivityType.POST_CREATED: TargetType.POST,
    ActivityType.COMMENT_CREATED: TargetType.COMMENT,
    ActivityType.POST_LIKED: TargetType.POST,
    ActivityType.COMMENT_LIKED: TargetType.COMMENT,
    ActivityType.FOLLOWED: TargetType.USER,
}


class Activity(Base):
    __tablename__ = "activities"
    __table_args__ = (
        # One row per (verb, target, actor): an unlike or unfollow finds the row it undoes, and
        # a retried like cannot log twice.
        UniqueConstraint("type", "target_id", "actor_id",
                         name="uq_activities_type_target_id_actor_id"),
        # "What the people I follow did" and "what was done to me", each newest first.
        Index("ix_activities_actor_id_created_at_id", "actor_id", "created_at", "id"),
        Index("ix_activities_owner_id_created_at_id", "owner_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    actor_id: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[int] = mapped_column(BigInteger)
    # Whose post, comment or self the action was done to; None for a new post (nobody's yet).
    owner_id: Mapped[int | None] = mapped_column(BigInteger)
    # The post and comment the activity belongs to: deleting either deletes the activity with
    # it, in the same statement, so a deleted post's activities are never shown.
    post_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("posts.id", ondelete="CASCADE"), index=True
    )
    comment_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("comments.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(Timestamp)
