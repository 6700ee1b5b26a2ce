"""The purge (auth/tasks.py) deletes what can no longer be used and nothing that still can."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from shared.clock import utcnow
from shared.contracts import REVOCATION_EPOCH_KEY, revoked_session_key
from shared.db import create_sessionmaker
from user_service.auth.models import LoginSession, RefreshToken
from user_service.auth.revocation import republish_revoked_sessions
from user_service.auth.tasks import (
    keep_revocations_published,
    purge_expired_sessions,
    purge_unverified_accounts,
)
from user_service.tests.factories import (
    make_login_session,
    make_refresh_token,
    make_user,
    make_verification,
)
from user_service.users.models import User

TTL = timedelta(days=30)


async def session_with_tokens(session: AsyncSession, *, created_days_ago: int,
                              token_expiries_days: list[float]) -> str:
    user = await make_user(session)
    now = utcnow()
    login = await make_login_session(session, user=user,
                                     created_at=now - timedelta(days=created_days_ago))
    for days in token_expiries_days:
        await make_refresh_token(session, login_session=login, expires_at=now + timedelta(days=days))
    return login.id


async def tokens_of(session: AsyncSession, session_id: str) -> int | None:
    """None when the session row is gone, else how many tokens it still has."""
    if await session.get(LoginSession, session_id, populate_existing=True) is None:
        return None
    return int((await session.execute(
        select(func.count()).where(RefreshToken.session_id == session_id))).scalar_one())


async def test_purge_keeps_live_state_and_removes_dead(
    db_engine: AsyncEngine, session: AsyncSession
) -> None:
    # Long-lived and still refreshed: its old rotated tokens go, its current one stays.
    active = await session_with_tokens(session, created_days_ago=90,
                                       token_expiries_days=[-40, -2, 25])
    # Abandoned months ago: every token long expired, so the session goes too.
    abandoned = await session_with_tokens(session, created_days_ago=90, token_expiries_days=[-60])
    # Expired only hours ago: kept for the grace day, so a late refresh hears token_expired.
    recent = await session_with_tokens(session, created_days_ago=31, token_expiries_days=[-0.25])
    await session.commit()
    await purge_expired_sessions(create_sessionmaker(db_engine), refresh_token_ttl=TTL)
    assert await tokens_of(session, active) == 1
    assert await tokens_of(session, abandoned) is None
    assert await tokens_of(session, recent) == 1


async def test_purge_deletes_accounts_unverified_for_over_a_day(
    db_engine: AsyncEngine, session: AsyncSession
) -> None:
    # Otherwise an address typed by someone who does not own it would stay taken.
    now = utcnow()
    squatted = await make_user(session, verified=False, created_at=now - timedelta(hours=25))
    await make_verification(session, user=squatted)
    pending = await make_user(session, verified=False, created_at=now - timedelta(hours=23))
    old_but_verified = await make_user(session, verified=True, created_at=now - timedelta(days=9))
    await session.commit()
    assert await purge_unverified_accounts(create_sessionmaker(db_engine)) >= 1
    for user, kept in ((squatted, False), (pending, True), (old_but_verified, True)):
        row = await session.get(User, user.id, populate_existing=True)
        assert (row is not None) is kept


async def test_revocations_lost_by_redis_are_published_again_from_mysql(
    db_engine: AsyncEngine, session: AsyncSession, redis: Redis
) -> None:
    user = await make_user(session)
    now = utcnow()
    recent = await make_login_session(session, user=user, created_at=now - timedelta(hours=1))
    recent.revoked_at = now - timedelta(minutes=10)  # an access token of it may still live
    long_ago = await make_login_session(session, user=user, created_at=now - timedelta(days=3))
    long_ago.revoked_at = now - timedelta(days=2)  # every access token of it has expired
    live = await make_login_session(session, user=user)
    await session.commit()
    # What Redis losing its data leaves behind (only this test's keys: the database is shared).
    await redis.delete(REVOCATION_EPOCH_KEY,
                       *(revoked_session_key(s.id) for s in (recent, long_ago, live)))

    await republish_revoked_sessions(create_sessionmaker(db_engine), redis,
                                     access_token_ttl_seconds=900)
    assert await redis.get(revoked_session_key(recent.id)) == "1"
    assert 900 < await redis.ttl(revoked_session_key(recent.id)) <= 960
    assert await redis.get(revoked_session_key(long_ago.id)) is None
    assert await redis.get(revoked_session_key(live.id)) is None
    assert await redis.exists(REVOCATION_EPOCH_KEY)


async def test_the_watch_publishes_again_when_the_epoch_key_goes(
    db_engine: AsyncEngine, session: AsyncSession, redis: Redis
) -> None:
    user = await make_user(session)
    revoked = await make_login_session(session, user=user, revoked=True)
    await session.commit()
    stop = asyncio.Event()
    watch = asyncio.create_task(keep_revocations_published(
        create_sessionmaker(db_engine), redis, stop=stop, access_token_ttl_seconds=900,
        interval_seconds=0.01))
    try:
        await redis.delete(REVOCATION_EPOCH_KEY, revoked_session_key(revoked.id))
        for _ in range(1000):  # up to about ten seconds
            if await redis.exists(REVOCATION_EPOCH_KEY):
                break
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await watch
    # The epoch key is written only once the revocations are back.
    assert await redis.get(revoked_session_key(revoked.id)) == "1"


async def test_two_replicas_purging_at_once_delete_each_row_once(
    db_engine: AsyncEngine, session: AsyncSession
) -> None:
    """Both replicas' purges run side by side: a row is deleted by one of them (a DELETE of a
    row already gone deletes nothing), neither fails, and live state stays."""
    now = utcnow()
    squatted = [await make_user(session, verified=False, created_at=now - timedelta(hours=25))
                for _ in range(20)]
    abandoned = [await session_with_tokens(session, created_days_ago=90,
                                           token_expiries_days=[-60, -50])
                 for _ in range(20)]
    active = await session_with_tokens(session, created_days_ago=90, token_expiries_days=[25])
    await session.commit()
    sessions = create_sessionmaker(db_engine)
    await asyncio.gather(
        purge_expired_sessions(sessions, refresh_token_ttl=TTL),
        purge_expired_sessions(create_sessionmaker(db_engine), refresh_token_ttl=TTL),
        purge_unverified_accounts(sessions), purge_unverified_accounts(sessions))
    for user in squatted:
        assert await session.get(User, user.id, populate_existing=True) is None
    for login in abandoned:
        assert await tokens_of(session, login) is None
    assert await tokens_of(session, active) == 1


async def test_two_replicas_publishing_revocations_at_once_publish_the_same_state(
    db_engine: AsyncEngine, session: AsyncSession, redis: Redis
) -> None:
    user = await make_user(session)
    revoked = await make_login_session(session, user=user, revoked=True)
    live = await make_login_session(session, user=user)
    await session.commit()
    await redis.delete(REVOCATION_EPOCH_KEY, revoked_session_key(revoked.id))
    await asyncio.gather(*(republish_revoked_sessions(create_sessionmaker(db_engine), redis,
                                                      access_token_ttl_seconds=900)
                           for _ in range(2)))
    assert await redis.get(revoked_session_key(revoked.id)) == "1"
    assert await redis.get(revoked_session_key(live.id)) is None
    assert await redis.exists(REVOCATION_EPOCH_KEY)
