"""Typed factories: rows made straight in the test schemas. Each flushes; the test commits when
the app under test (another connection) must see the rows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from shared.clock import utcnow
from social_service.comments.models import Comment
from social_service.follows.models import Follow
from social_service.posts.models import Post
from user_service.tests.factories import make_user


async def make_account(user_session: AsyncSession) -> int:
    """A user that exists in user_service (the follow routes ask); returns its id."""
    user = await make_user(user_session)
    await user_session.commit()
    return user.id


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
