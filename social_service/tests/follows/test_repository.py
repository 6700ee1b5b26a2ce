"""The SQL of follows/repository.py whose statements carry a rule."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.testing.identity import new_user_id
from social_service.follows.models import FollowCounts
from social_service.follows.repository import FollowsRepository


async def pulled(session: AsyncSession, user_id: int) -> bool:
    return bool(await session.scalar(
        select(FollowCounts.posts_pulled).where(FollowCounts.user_id == user_id)))


async def test_an_author_is_pulled_from_the_threshold_on_and_stays_so(session: AsyncSession) -> None:
    follows = FollowsRepository(session=session)
    star = new_user_id()
    fans = [new_user_id() for _ in range(3)]
    states = []
    for fan in fans:
        await follows.lock_counts(fan, star)
        await follows.add_to_counts(fan, star, +1, pull_threshold=3)
        states.append(await pulled(session, star))
    # posts_pulled is assigned before the count moves, yet judges the count after the move.
    assert states == [False, False, True]
    await follows.add_to_counts(fans[0], star, -1, pull_threshold=3)
    assert await follows.counts(star) == (2, 0)
    assert await pulled(session, star)
    assert await follows.counts(fans[1]) == (0, 1)
    assert not await pulled(session, fans[1])


async def test_counts_of_a_user_never_followed_are_zero(session: AsyncSession) -> None:
    assert await FollowsRepository(session=session).counts(new_user_id()) == (0, 0)
