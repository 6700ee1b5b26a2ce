"""Who follows whom, and each user's follow counts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Index
from sqlalchemy.orm import Mapped, mapped_column

from social_service.db import Base, Counter, Timestamp


class Follow(Base):
    __tablename__ = "follows"
    __table_args__ = (
        # Whom a user follows, and who follows a user, each newest first.
        Index("ix_follows_follower_id_created_at_followee_id",
              "follower_id", "created_at", "followee_id"),
        Index("ix_follows_followee_id_created_at_follower_id",
              "followee_id", "created_at", "follower_id"),
    )

    # The primary key is the idempotency: one follow per pair.
    follower_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    followee_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class FollowCounts(Base):
    """A user's counts, changed by ±1 in the transaction that adds or removes a follow row."""

    __tablename__ = "follow_counts"
    __table_args__ = (
        # The few pulled authors, found before their follow rows (see posts_pulled).
        Index("ix_follow_counts_posts_pulled", "posts_pulled"),
    )

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    follower_count: Mapped[int] = mapped_column(Counter, default=0)
    following_count: Mapped[int] = mapped_column(Counter, default=0)
    # Set once the user has had many followers (SOCIAL_FEED_PULL_THRESHOLD) and never unset:
    # their posts are no longer pushed to followers' timelines but pulled when a feed is read.
    # Sticky, so a post is always either pushed or pulled, whatever the count does later.
    posts_pulled: Mapped[bool] = mapped_column(Boolean, default=False)
