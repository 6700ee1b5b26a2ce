"""Follows: following and unfollowing (idempotent, counts exact), and the lists of each side."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from shared.clock import utcnow
from shared.pagination import Key, page_of
from shared.reads import ReadSession
from shared.schemas import Page
from social_service.activities.models import ActivityType
from social_service.activities.repository import ActivitiesRepository
from social_service.clients import UserDirectory
from social_service.follows.errors import CannotFollowYourself, UserNotFound
from social_service.follows.repository import FollowsRepository, follow_key
from social_service.follows.schemas import FollowOut


class FollowEvents(Protocol):
    """Told of each follow this request adds or removes; acts once the transaction committed
    (the feed's timelines implement it: follows cannot import the feed, which builds on them)."""

    def followed(self, *, follower_id: int, followee_id: int) -> None: ...

    def unfollowed(self, *, follower_id: int, followee_id: int) -> None: ...


class FollowsService:
    """Made with `reads` to list, or with `session` and `events` to follow and unfollow."""

    def __init__(self, users: UserDirectory, *, reads: ReadSession | None = None,
                 session: AsyncSession | None = None, events: FollowEvents | None = None,
                 pull_threshold: int) -> None:
        self.follows = FollowsRepository(reads=reads, session=session)
        self.activities = ActivitiesRepository(session=session)
        self.users = users
        self._events = events
        self.pull_threshold = pull_threshold

    @property
    def events(self) -> FollowEvents:
        if self._events is None:
            raise TypeError("following needs the request's timeline changes")
        return self._events

    async def follow(self, follower_id: int, followee_id: int) -> None:
        if follower_id == followee_id:
            raise CannotFollowYourself()
        # Asked before the first statement, so no transaction waits on another service.
        await self._require_user(followee_id)
        await self.follows.lock_counts(follower_id, followee_id)
        now = utcnow()
        if await self.follows.add(follower_id, followee_id, now=now):
            await self.follows.add_to_counts(follower_id, followee_id, +1,
                                             pull_threshold=self.pull_threshold)
            await self.activities.record(ActivityType.FOLLOWED, actor_id=follower_id,
                                         target_id=followee_id, owner_id=followee_id,
                                         created_at=now)
            self.events.followed(follower_id=follower_id, followee_id=followee_id)

    async def unfollow(self, follower_id: int, followee_id: int) -> None:
        """No existence check: a follow of an account since deleted must still be undoable."""
        if follower_id == followee_id:
            raise CannotFollowYourself()
        await self.follows.lock_counts(follower_id, followee_id)
        if await self.follows.remove(follower_id, followee_id):
            await self.follows.add_to_counts(follower_id, followee_id, -1,
                                             pull_threshold=self.pull_threshold)
            await self.activities.remove(ActivityType.FOLLOWED, actor_id=follower_id,
                                         target_id=followee_id)
            self.events.unfollowed(follower_id=follower_id, followee_id=followee_id)

    async def followers(self, user_id: int, *, cursor: str | None, limit: int) -> Page[FollowOut]:
        before = Key.from_cursor(cursor)
        await self._require_user(user_id)
        rows = await self.follows.page("followers", user_id, before=before, limit=limit)
        return self._page(rows, limit)

    async def following(self, user_id: int, *, cursor: str | None, limit: int) -> Page[FollowOut]:
        before = Key.from_cursor(cursor)
        await self._require_user(user_id)
        rows = await self.follows.page("following", user_id, before=before, limit=limit)
        return self._page(rows, limit)

    async def _require_user(self, user_id: int) -> None:
        if not await self.users.exists(user_id):
            raise UserNotFound()

    @staticmethod
    def _page(rows: Sequence[Mapping[str, Any]], limit: int) -> Page[FollowOut]:
        items, next_cursor = page_of(rows, limit, follow_key)
        return Page(items=[FollowOut.model_validate(row) for row in items], next_cursor=next_cursor)
