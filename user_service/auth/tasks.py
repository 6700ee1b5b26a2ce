"""Background loops of sign-in: the periodic purge of what can no longer be used, expired
refresh tokens, then the sessions left with none, and accounts never verified within a day.
Without it both tables grow by a row or two with every login, forever, and an address typed by
someone who does not own it would stay taken.

A token is kept for a day past its expiry, so a late refresh still gets `token_expired` rather
than `invalid_token`. Deletes go in small batches, each its own transaction, so the purge never
holds many locks while logins are writing to the same tables.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.clock import utcnow
from user_service.auth.repository import AuthRepository

logger = logging.getLogger("user_service.housekeeping")

EXPIRED_GRACE = timedelta(days=1)
# API.md: unverified accounts are deleted after 24 hours.
UNVERIFIED_ACCOUNT_LIFETIME = timedelta(hours=24)
BATCH = 1000


async def purge_expired_sessions(sessionmaker: async_sessionmaker[AsyncSession],
                                 *, refresh_token_ttl: timedelta) -> tuple[int, int]:
    """Returns (refresh tokens deleted, sessions deleted)."""
    tokens = sessions = 0
    now = utcnow()
    while True:
        async with sessionmaker() as session, session.begin():
            deleted = await AuthRepository(session).delete_expired_refresh_tokens(
                expired_before=now - EXPIRED_GRACE, limit=BATCH)
        tokens += deleted
        if deleted < BATCH:
            break
    while True:
        # Only sessions older than any token of theirs could be: a session is created together
        # with its first token, and each token lives refresh_token_ttl at most.
        async with sessionmaker() as session, session.begin():
            deleted = await AuthRepository(session).delete_sessions_without_tokens(
                created_before=now - EXPIRED_GRACE - refresh_token_ttl, limit=BATCH)
        sessions += deleted
        if deleted < BATCH:
            break
    return tokens, sessions


async def purge_unverified_accounts(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """Deletes accounts never verified within a day of their sign-up; returns how many."""
    deleted_total = 0
    created_before = utcnow() - UNVERIFIED_ACCOUNT_LIFETIME
    while True:
        async with sessionmaker() as session, session.begin():
            deleted = await AuthRepository(session).delete_unverified_users(
                created_before=created_before, limit=BATCH)
        deleted_total += deleted
        if deleted < BATCH:
            return deleted_total


async def purge_expired_sign_in_state_periodically(
    sessionmaker: async_sessionmaker[AsyncSession], *, refresh_token_ttl: timedelta,
    interval_seconds: float,
) -> None:
    while True:
        try:
            tokens, sessions = await purge_expired_sessions(
                sessionmaker, refresh_token_ttl=refresh_token_ttl)
            accounts = await purge_unverified_accounts(sessionmaker)
            if tokens or sessions or accounts:
                logger.info("purged expired sign-in state", extra={
                    "refresh_tokens": tokens, "sessions": sessions,
                    "unverified_accounts": accounts})
        except Exception:
            # A failed round (database restarting, say) is retried at the next interval.
            logger.exception("purge of expired sign-in state failed")
        await asyncio.sleep(interval_seconds)
