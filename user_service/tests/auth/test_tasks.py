"""The purge (auth/tasks.py) deletes what can no longer be used and nothing that still can."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from shared.clock import utcnow
from shared.db import create_sessionmaker
from user_service.auth.models import LoginSession, RefreshToken
from user_service.auth.tasks import purge_expired_sessions, purge_unverified_accounts
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
