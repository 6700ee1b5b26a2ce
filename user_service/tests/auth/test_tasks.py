"""The purge deletes what can no longer be used and nothing that still can (real MariaDB)."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.clock import utcnow
from shared.db import create_sessionmaker
from user_service.auth.tasks import purge_expired_sessions

TTL = timedelta(days=30)


async def add_user(engine: AsyncEngine) -> int:
    async with engine.begin() as conn:
        result = await conn.execute(text(
            "INSERT INTO users (email, password_hash, name, email_verified, created_at, updated_at)"
            " VALUES (:email, 'x', 'Purge', 1, :now, :now)"),
            {"email": f"purge-{uuid.uuid4().hex}@example.com", "now": utcnow()})
        return int(result.lastrowid)


async def add_session(engine: AsyncEngine, user_id: int, *, created_days_ago: int,
                      token_expiries_days: list[float]) -> str:
    session_id = secrets.token_hex(16)
    now = utcnow()
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO sessions (id, user_id, created_at) VALUES (:id, :user, :created)"),
            {"id": session_id, "user": user_id, "created": now - timedelta(days=created_days_ago)})
        for days in token_expiries_days:
            await conn.execute(text(
                "INSERT INTO refresh_tokens (session_id, token_hash, expires_at, created_at)"
                " VALUES (:sid, :hash, :expires, :now)"),
                {"sid": session_id, "hash": secrets.token_hex(32),
                 "expires": now + timedelta(days=days), "now": now})
    return session_id


async def tokens_of(engine: AsyncEngine, session_id: str) -> int | None:
    """None when the session row is gone, else how many tokens it still has."""
    async with engine.connect() as conn:
        exists = (await conn.execute(text("SELECT COUNT(*) FROM sessions WHERE id = :id"),
                                     {"id": session_id})).scalar_one()
        if not exists:
            return None
        return int((await conn.execute(
            text("SELECT COUNT(*) FROM refresh_tokens WHERE session_id = :id"),
            {"id": session_id})).scalar_one())


async def test_purge_keeps_live_state_and_removes_dead(db_engine: AsyncEngine) -> None:
    user_id = await add_user(db_engine)
    # Long-lived and still refreshed: its old rotated tokens go, its current one stays.
    active = await add_session(db_engine, user_id, created_days_ago=90, token_expiries_days=[-40, -2, 25])
    # Abandoned months ago: every token long expired, so the session goes too.
    abandoned = await add_session(db_engine, user_id, created_days_ago=90, token_expiries_days=[-60])
    # Expired only hours ago: kept for the grace day, so a late refresh hears token_expired.
    recent = await add_session(db_engine, user_id, created_days_ago=31, token_expiries_days=[-0.25])
    await purge_expired_sessions(create_sessionmaker(db_engine), refresh_token_ttl=TTL)
    assert await tokens_of(db_engine, active) == 1
    assert await tokens_of(db_engine, abandoned) is None
    assert await tokens_of(db_engine, recent) == 1
