"""Every SQL statement of follows and follow counts: reads on the ReadSession, changes on the
request session (as in posts/repository.py)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import bindparam, delete, insert, or_, select, update
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.orm import InstrumentedAttribute

from shared.pagination import Key, key_params, older_than
from shared.repository import Repository, execute_counted
from social_service.follows.models import Follow, FollowCounts

Side = Literal["followers", "following"]


def follow_key(row: Mapping[str, Any]) -> Key:
    return Key(row["followed_at"], row["user_id"])


def _page(this_side: InstrumentedAttribute[int], other_side: InstrumentedAttribute[int], *,
          after_key: bool) -> Any:
    """The other side's ids where this side is the user, newest follow first."""
    query = select(other_side.label("user_id"), Follow.created_at.label("followed_at"))
    query = query.where(this_side == bindparam("user_id"))
    if after_key:
        query = query.where(older_than(Follow.created_at, other_side))
    return query.order_by(Follow.created_at.desc(), other_side.desc()).limit(bindparam("limit"))


FOLLOW_PAGES: dict[tuple[Side, bool], Any] = {
    **{("followers", after): _page(Follow.followee_id, Follow.follower_id, after_key=after)
       for after in (False, True)},
    **{("following", after): _page(Follow.follower_id, Follow.followee_id, after_key=after)
       for after in (False, True)},
}
POSTS_PULLED = select(FollowCounts.posts_pulled).where(FollowCounts.user_id == bindparam("user_id"))
FOLLOWER_IDS = select(Follow.follower_id).where(Follow.followee_id == bindparam("user_id"))


class FollowsRepository(Repository):
    async def page(self, side: Side, user_id: int, *, before: Key | None, limit: int
                   ) -> list[dict[str, Any]]:
        parameters = {"user_id": user_id, "limit": limit + 1, **key_params(before)}
        return (await self.reads.execute(FOLLOW_PAGES[(side, before is not None)],
                                         parameters)).all()

    async def posts_pulled(self, user_id: int) -> bool:
        return bool((await self.reads.execute(POSTS_PULLED, {"user_id": user_id})).scalar())

    async def follower_ids(self, user_id: int) -> list[int]:
        rows = (await self.reads.execute(FOLLOWER_IDS, {"user_id": user_id})).all()
        return [row["follower_id"] for row in rows]

    # Writes, on the request session.

    async def lock_counts(self, *user_ids: int) -> None:
        """Creates the users' count rows if missing and locks them, in id order: two follows
        between the same two users in opposite directions then queue instead of deadlocking."""
        statement = mysql_insert(FollowCounts).values([
            {"user_id": user_id, "follower_count": 0, "following_count": 0, "posts_pulled": False}
            for user_id in sorted(set(user_ids))
        ])
        await self.session.execute(
            statement.on_duplicate_key_update(user_id=statement.inserted.user_id)
        )

    async def add(self, follower_id: int, followee_id: int, *, now: datetime) -> bool:
        """True if this call added the follow (the caller holds both count rows locked)."""
        statement = insert(Follow).prefix_with("IGNORE").values(
            follower_id=follower_id, followee_id=followee_id, created_at=now)
        return await execute_counted(self.session, statement) == 1

    async def remove(self, follower_id: int, followee_id: int) -> bool:
        statement = delete(Follow).where(Follow.follower_id == follower_id,
                                         Follow.followee_id == followee_id)
        return await execute_counted(self.session, statement) == 1

    async def add_to_counts(self, follower_id: int, followee_id: int, delta: int, *,
                            pull_threshold: int) -> None:
        await self.session.execute(update(FollowCounts).where(FollowCounts.user_id == follower_id)
                                   .values(following_count=FollowCounts.following_count + delta))
        # posts_pulled first: MySQL assigns left to right, so it still sees the old count.
        await self.session.execute(
            update(FollowCounts).where(FollowCounts.user_id == followee_id).ordered_values(
                (FollowCounts.posts_pulled, or_(
                    FollowCounts.posts_pulled,
                    FollowCounts.follower_count + delta >= pull_threshold)),
                (FollowCounts.follower_count, FollowCounts.follower_count + delta),
            )
        )

    async def counts(self, user_id: int) -> tuple[int, int]:
        """(followers, following) of the user."""
        row = (await self.session.execute(
            select(FollowCounts.follower_count, FollowCounts.following_count)
            .where(FollowCounts.user_id == user_id)
        )).first()
        return (row.follower_count, row.following_count) if row else (0, 0)
