"""The SQL of the two streams built from whom a user follows: the newsfeed (their posts) and the
activity stream (what they did, and what others did to the user's own things)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, union, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from social_service.activities.models import Activity
from social_service.db import AnyRow
from social_service.follows.models import Follow, FollowCounts
from social_service.keyset import Key, older_than
from social_service.posts.models import Post
from social_service.posts.repository import NEWEST_FIRST, POST_COLUMNS

ACTIVITY_COLUMNS = (Activity.id, Activity.actor_id, Activity.type, Activity.target_id,
                    Activity.created_at)


class FeedRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def newsfeed_page(self, user_id: int, *, before: Key | None, limit: int
                            ) -> Sequence[AnyRow]:
        """Fan-out on read: the followed authors' posts through (author_id, created_at, id)."""
        query = (select(*POST_COLUMNS)
                 .join(Follow, Follow.followee_id == Post.author_id)
                 .where(Follow.follower_id == user_id))
        condition = older_than(Post.created_at, Post.id, before)
        if condition is not None:
            query = query.where(condition)
        result = await self.session.execute(query.order_by(*NEWEST_FIRST).limit(limit + 1))
        return result.all()

    async def newsfeed_keys(self, user_id: int, *, limit: int) -> Sequence[AnyRow]:
        """(created_at, id) of the newest `limit` feed posts: what a timeline is built from."""
        result = await self.session.execute(
            select(Post.created_at, Post.id)
            .join(Follow, Follow.followee_id == Post.author_id)
            .where(Follow.follower_id == user_id)
            .order_by(*NEWEST_FIRST).limit(limit)
        )
        return result.all()

    async def posts_seen_by(self, user_id: int, post_ids: Sequence[int]) -> dict[int, AnyRow]:
        """Those of the posts that still exist, each with `followed`: whether the user still
        follows its author."""
        result = await self.session.execute(
            select(*POST_COLUMNS, Follow.follower_id.is_not(None).label("followed"))
            .outerjoin(Follow, (Follow.followee_id == Post.author_id)
                       & (Follow.follower_id == user_id))
            .where(Post.id.in_(post_ids))
        )
        return {row.id: row for row in result}

    async def pulled_followees(self, user_id: int) -> list[int]:
        """The pulled authors the user follows: found from the few pulled authors, each checked
        by the follow's primary key, never by walking everyone the user follows."""
        result = await self.session.scalars(
            select(FollowCounts.user_id)
            .join(Follow, (Follow.followee_id == FollowCounts.user_id)
                  & (Follow.follower_id == user_id))
            .where(FollowCounts.posts_pulled.is_(True))
        )
        return list(result)

    async def posts_by_authors(self, author_ids: Sequence[int], *, before: Key | None,
                               limit: int) -> Sequence[AnyRow]:
        """Each author's newest `limit` through their own index range, then merged."""
        condition = older_than(Post.created_at, Post.id, before)
        parts = []
        for author_id in author_ids:
            part = select(*POST_COLUMNS).where(Post.author_id == author_id)
            if condition is not None:
                part = part.where(condition)
            parts.append(part.order_by(*NEWEST_FIRST).limit(limit))
        both = union_all(*parts).subquery()
        result = await self.session.execute(
            select(both).order_by(both.c.created_at.desc(), both.c.id.desc()).limit(limit)
        )
        return result.all()

    async def activities_page(self, user_id: int, *, before: Key | None, limit: int
                              ) -> Sequence[AnyRow]:
        """Two index-ordered halves, each cut to the page before they are merged: what the
        followed users did (actor_id index) and what others did to the user (owner_id index).
        UNION drops an activity both halves find (a followed user liking the user's post)."""
        condition = older_than(Activity.created_at, Activity.id, before)
        by_followed = (select(*ACTIVITY_COLUMNS)
                       .join(Follow, Follow.followee_id == Activity.actor_id)
                       .where(Follow.follower_id == user_id))
        to_me = select(*ACTIVITY_COLUMNS).where(Activity.owner_id == user_id,
                                                Activity.actor_id != user_id)
        if condition is not None:
            by_followed = by_followed.where(condition)
            to_me = to_me.where(condition)
        newest = (Activity.created_at.desc(), Activity.id.desc())
        both = union(by_followed.order_by(*newest).limit(limit + 1),
                     to_me.order_by(*newest).limit(limit + 1)).subquery()
        result = await self.session.execute(
            select(both).order_by(both.c.created_at.desc(), both.c.id.desc()).limit(limit + 1)
        )
        return result.all()
