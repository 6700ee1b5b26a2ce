"""The SQL of the two streams built from whom a user follows: the newsfeed (their posts) and the
activity stream (what they did, and what others did to the user's own things). All of it reads,
on the ReadSession: statements built once (per page size or author count, where lists of ids
are bound one parameter each)."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import BindParameter, bindparam, select, union, union_all

from shared.pagination import Key, key_params, older_than
from shared.repository import Repository
from social_service.activities.models import Activity
from social_service.follows.models import Follow, FollowCounts
from social_service.posts.models import Post
from social_service.posts.repository import NEWEST_FIRST, POST_COLUMNS

Row = dict[str, Any]

ACTIVITY_COLUMNS = (Activity.id, Activity.actor_id, Activity.type, Activity.target_id,
                    Activity.created_at)
FOLLOWED_BY_USER = Follow.follower_id == bindparam("user_id")


def _newsfeed(*, after_key: bool) -> Any:
    """Fan-out on read: the followed authors' posts through (author_id, created_at, id)."""
    query = (select(*POST_COLUMNS).join(Follow, Follow.followee_id == Post.author_id)
             .where(FOLLOWED_BY_USER))
    if after_key:
        query = query.where(older_than(Post.created_at, Post.id))
    return query.order_by(*NEWEST_FIRST).limit(bindparam("limit"))


NEWSFEED_PAGES = {after_key: _newsfeed(after_key=after_key) for after_key in (False, True)}
NEWSFEED_KEYS = (select(Post.created_at, Post.id)
                 .join(Follow, Follow.followee_id == Post.author_id).where(FOLLOWED_BY_USER)
                 .order_by(*NEWEST_FIRST).limit(bindparam("limit")))
# Found from the few pulled authors, each checked by the follow's primary key, never by
# walking everyone the user follows.
PULLED_FOLLOWEES = (select(FollowCounts.user_id)
                    .join(Follow, (Follow.followee_id == FollowCounts.user_id) & FOLLOWED_BY_USER)
                    .where(FollowCounts.posts_pulled.is_(True)))


@cache
def posts_seen_by(count: int) -> Any:
    """`count` posts by id, those that exist, each with `followed`: whether the user follows
    its author."""
    ids: list[BindParameter[int]] = [bindparam(f"post_id_{n}") for n in range(count)]
    return (select(*POST_COLUMNS, Follow.follower_id.is_not(None).label("followed"))
            .outerjoin(Follow, (Follow.followee_id == Post.author_id) & FOLLOWED_BY_USER)
            .where(Post.id.in_(ids)))


@cache
def posts_by_authors(count: int, *, after_key: bool) -> Any:
    """Each of `count` authors' newest posts through their own index range, then merged."""
    parts = []
    for n in range(count):
        part = select(*POST_COLUMNS).where(Post.author_id == bindparam(f"author_id_{n}"))
        if after_key:
            part = part.where(older_than(Post.created_at, Post.id))
        parts.append(part.order_by(*NEWEST_FIRST).limit(bindparam("limit")))
    merged = union_all(*parts).subquery()
    return (select(merged).order_by(merged.c.created_at.desc(), merged.c.id.desc())
            .limit(bindparam("limit")))


def _activities(*, after_key: bool) -> Any:
    """Two index-ordered halves, each cut to the page before they are merged: what the
    followed users did (actor_id index) and what others did to the user (owner_id index).
    UNION drops an activity both halves find (a followed user liking the user's post)."""
    by_followed = (select(*ACTIVITY_COLUMNS).join(Follow, Follow.followee_id == Activity.actor_id)
                   .where(FOLLOWED_BY_USER))
    to_me = select(*ACTIVITY_COLUMNS).where(Activity.owner_id == bindparam("user_id"),
                                            Activity.actor_id != bindparam("user_id"))
    if after_key:
        by_followed = by_followed.where(older_than(Activity.created_at, Activity.id))
        to_me = to_me.where(older_than(Activity.created_at, Activity.id))
    newest = (Activity.created_at.desc(), Activity.id.desc())
    both = union(by_followed.order_by(*newest).limit(bindparam("limit")),
                 to_me.order_by(*newest).limit(bindparam("limit"))).subquery()
    return (select(both).order_by(both.c.created_at.desc(), both.c.id.desc())
            .limit(bindparam("limit")))


ACTIVITY_PAGES = {after_key: _activities(after_key=after_key) for after_key in (False, True)}


class FeedRepository(Repository):
    async def newsfeed_page(self, user_id: int, *, before: Key | None, limit: int) -> list[Row]:
        """`limit` + 1 rows at most: the extra one says whether a next page exists."""
        parameters = {"user_id": user_id, "limit": limit + 1, **key_params(before)}
        return (await self.reads.execute(NEWSFEED_PAGES[before is not None], parameters)).all()

    async def newsfeed_keys(self, user_id: int, *, limit: int) -> list[Key]:
        """The keys of the newest `limit` feed posts: what a timeline is built from."""
        rows = (await self.reads.execute(NEWSFEED_KEYS, {"user_id": user_id, "limit": limit})).all()
        return [Key(row["created_at"], row["id"]) for row in rows]

    async def posts_seen_by(self, user_id: int, post_ids: list[int]) -> dict[int, Row]:
        """Those of the posts that still exist, each with `followed`."""
        parameters: dict[str, Any] = {f"post_id_{n}": post_id for n, post_id in enumerate(post_ids)}
        result = await self.reads.execute(posts_seen_by(len(post_ids)),
                                          {**parameters, "user_id": user_id})
        return {row["id"]: row for row in result.all()}

    async def pulled_followees(self, user_id: int) -> list[int]:
        rows = (await self.reads.execute(PULLED_FOLLOWEES, {"user_id": user_id})).all()
        return [row["user_id"] for row in rows]

    async def posts_by_authors(self, author_ids: list[int], *, before: Key | None,
                               limit: int) -> list[Row]:
        parameters: dict[str, Any] = {f"author_id_{n}": a for n, a in enumerate(author_ids)}
        statement = posts_by_authors(len(author_ids), after_key=before is not None)
        return (await self.reads.execute(
            statement, {**parameters, "limit": limit, **key_params(before)})).all()

    async def activities_page(self, user_id: int, *, before: Key | None, limit: int
                              ) -> list[Row]:
        parameters = {"user_id": user_id, "limit": limit + 1, **key_params(before)}
        return (await self.reads.execute(ACTIVITY_PAGES[before is not None], parameters)).all()
