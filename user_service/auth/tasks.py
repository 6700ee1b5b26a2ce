"""Background loops of sign-in: the periodic purge of what can no longer be used, expired
refresh tokens, then the sessions left with none, and accounts never verified within a day.
Without it both tables grow by a row or two with every login, forever, and an address typed by
someone who does not own it would stay taken. And the watch on Redis's revocation state, which
publishes the revocations again from MySQL whenever Redis has lost them.

A token is kept for a day past its expiry, so a late refresh still gets `token_expired` rather
than `invalid_token`. Deletes go in small batches, each its own transaction, so the purge never
holds many locks while logins are writing to the same tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import timedelta

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.clock import utcnow
from shared.contracts import REVOCATION_EPOCH_KEY
from shared.db import AfterCommitTasks, Transactions, session_scope
from shared.loops import run_periodically
from user_service.auth.limits import RequestLimiter
from user_service.auth.repository import AuthRepository
from user_service.auth.revocation import republish_revoked_sessions
from user_service.auth.service import AuthService

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
    auth = Transactions(sessionmaker, AuthRepository)
    while True:
        async with auth.write() as repository:
            deleted = await repository.delete_expired_refresh_tokens(
                expired_before=now - EXPIRED_GRACE, limit=BATCH)
        tokens += deleted
        if deleted < BATCH:
            break
    while True:
        # Only sessions older than any token of theirs could be: a session is created together
        # with its first token, and each token lives refresh_token_ttl at most.
        async with auth.write() as repository:
            deleted = await repository.delete_sessions_without_tokens(
                created_before=now - EXPIRED_GRACE - refresh_token_ttl, limit=BATCH)
        sessions += deleted
        if deleted < BATCH:
            break
    return tokens, sessions


async def purge_unverified_accounts(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """Deletes accounts never verified within a day of their sign-up; returns how many."""
    deleted_total = 0
    created_before = utcnow() - UNVERIFIED_ACCOUNT_LIFETIME
    auth = Transactions(sessionmaker, AuthRepository)
    while True:
        async with auth.write() as repository:
            deleted = await repository.delete_unverified_users(
                created_before=created_before, limit=BATCH)
        deleted_total += deleted
        if deleted < BATCH:
            return deleted_total


async def purge_expired_sign_in_state_periodically(
    sessionmaker: async_sessionmaker[AsyncSession], *, refresh_token_ttl: timedelta,
    interval_seconds: float,
) -> None:
    async def purge_round() -> None:
        tokens, sessions = await purge_expired_sessions(
            sessionmaker, refresh_token_ttl=refresh_token_ttl)
        accounts = await purge_unverified_accounts(sessionmaker)
        if tokens or sessions or accounts:
            logger.info("purged expired sign-in state", extra={
                "refresh_tokens": tokens, "sessions": sessions, "unverified_accounts": accounts})

    # A failed round (database restarting, say) is retried at the next interval.
    await run_periodically(purge_round, interval_seconds=interval_seconds, logger=logger,
                           what="purging expired sign-in state")


async def keep_revocations_published(
    sessionmaker: async_sessionmaker[AsyncSession], redis: Redis, *, stop: asyncio.Event,
    access_token_ttl_seconds: int, interval_seconds: float,
) -> None:
    """At start-up, and whenever the epoch key is missing, publish every recent revocation
    again from MySQL (the gateway refuses tokens meanwhile). The round after such a
    publication publishes once more: a revocation whose transaction was still open while the
    first read MySQL committed too late for it (its own Redis write having been lost).

    Ends after the round in progress once `stop` is set: it runs every second, so a
    cancellation would often land inside a query, which can leave the driver's connection
    waiting for ever."""
    published_last_round = True  # so the first round, at start-up, publishes
    while not stop.is_set():
        try:
            if published_last_round or not await redis.exists(REVOCATION_EPOCH_KEY):
                count = await republish_revoked_sessions(
                    sessionmaker, redis, access_token_ttl_seconds=access_token_ttl_seconds)
                if not published_last_round:
                    logger.warning("revocation state missing in Redis; published again from "
                                   "MySQL", extra={"revoked_sessions": count})
                published_last_round = not published_last_round
        except Exception:
            # Redis or MySQL unreachable: the gateway fails closed meanwhile; try again soon.
            logger.exception("publishing revocations failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_seconds)


async def send_delayed_codes(
    sessionmaker: async_sessionmaker[AsyncSession], after_commit: AfterCommitTasks,
    limiter: RequestLimiter, auth_for: Callable[[AsyncSession], AuthService],
) -> int:
    """Mails a fresh code to every address the mail guard delayed, as long as the hour has
    room, longest-waiting first; returns how many were mailed. Safe with replicas: each address
    is popped by one of them."""
    mailed = 0
    while (email := await limiter.next_delayed()) is not None:
        async with asynccontextmanager(session_scope)(sessionmaker, after_commit) as session:
            mailed += await auth_for(session).mail_delayed_code(email)
    return mailed


async def send_delayed_codes_periodically(
    sessionmaker: async_sessionmaker[AsyncSession], after_commit: AfterCommitTasks,
    limiter: RequestLimiter, auth_for: Callable[[AsyncSession], AuthService], *,
    interval_seconds: float,
) -> None:
    async def mail_round() -> None:
        mailed = await send_delayed_codes(sessionmaker, after_commit, limiter, auth_for)
        if mailed:
            logger.info("mailed delayed verification codes", extra={"mailed": mailed})

    await run_periodically(mail_round, interval_seconds=interval_seconds, logger=logger,
                           what="mailing delayed verification codes")
