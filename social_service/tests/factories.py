"""Typed factories: rows made straight in the test schemas. Each flushes; the test commits when
the app under test (another connection) must see the rows."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from shared.clock import utcnow
from social_service.comments.models import Comment
from social_service.follows.models import Follow
from social_service.posts.models import Post
from user_service.users.models import User


async def make_account(user_session: AsyncSession) -> int:
    """A verified account in user_service's schema (the follow routes ask whether a user
    exists), made with user_service's own model; returns its id. No one logs in with it."""
    now = utcnow()
    user = User(email=f"social-{secrets.token_hex(8)}@example.com", password_hash="unusable",
                name="Min-ji", email_verified=True, created_at=now, updated_at=now)
    user_session.add(user)
    await user_session.flush()
    user_id = user.id
    await user_session.commit()
    return user_id


async def make_post(session: AsyncSession, *, author_id: int, content: str = "hello",
                    created_at: datetime | None = None) -> Post:
    now = created_at or utcnow()
    post = Post(author_id=author_id, content=content, like_count=0, comment_count=0,
                created_at=now, updated_at=now)
    session.add(post)
    await session.flush()
    return post


async def make_comment(session: AsyncSession, *, post: Post, author_id: int,
                       content: str = "nice") -> Comment:
    now = utcnow()
    comment = Comment(post_id=post.id, author_id=author_id, content=content, like_count=0,
                      created_at=now, updated_at=now)
    session.add(comment)
    post.comment_count += 1
    await session.flush()
    return comment


async def make_follow(session: AsyncSession, *, follower_id: int, followee_id: int,
                      created_at: datetime | None = None) -> None:
    """The row only (no counts): for tests of what a follow shows, not of following."""
    session.add(Follow(follower_id=follower_id, followee_id=followee_id,
                       created_at=created_at or utcnow()))
    await session.flush()
