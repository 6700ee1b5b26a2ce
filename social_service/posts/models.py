"""Posts and their likes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Text
from sqlalchemy.orm import Mapped, mapped_column

from social_service.db import Base, Counter, Timestamp


class Post(Base):
    __tablename__ = "posts"
    __table_args__ = (
        # A user's posts newest first, and the newsfeed's fan-out on read over followed authors.
        Index("ix_posts_author_id_created_at_id", "author_id", "created_at", "id"),
        # Every post newest first (GET /posts without author_id).
        Index("ix_posts_created_at_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    author_id: Mapped[int] = mapped_column(BigInteger)
    content: Mapped[str] = mapped_column(Text)
    # Changed only by `count = count ± 1` in the transaction that adds or removes the row.
    like_count: Mapped[int] = mapped_column(Counter, default=0)
    comment_count: Mapped[int] = mapped_column(Counter, default=0)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)


class PostLike(Base):
    __tablename__ = "post_likes"

    # The primary key is the idempotency: one like per (post, user).
    post_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
