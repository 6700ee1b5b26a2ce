"""The SQL of auth/repository.py whose conditions carry a rule."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from user_service.auth.models import EmailVerification, LoginSession
from user_service.auth.repository import AuthRepository
from user_service.auth.service import hash_code
from user_service.tests.factories import make_login_session, make_user, make_verification


async def test_a_code_attempt_counts_only_against_that_code_below_the_limit(
    session: AsyncSession,
) -> None:
    user = await make_user(session, verified=False)
    await make_verification(session, user=user, code="111111", failed_attempts=3)
    repository = AuthRepository(session)
    current = hash_code(user.id, "111111")
    assert not await repository.count_code_attempt(
        user.id, code_hash=hash_code(user.id, "222222"), max_attempts=5)  # a replaced code
    assert await repository.count_code_attempt(user.id, code_hash=current, max_attempts=5)
    assert await repository.count_code_attempt(user.id, code_hash=current, max_attempts=5)
    assert not await repository.count_code_attempt(user.id, code_hash=current, max_attempts=5)
    verification = await session.get(EmailVerification, user.id, populate_existing=True)
    assert verification is not None
    assert verification.failed_attempts == 5


async def test_revoking_other_sessions_keeps_the_callers_and_skips_revoked_ones(
    session: AsyncSession,
) -> None:
    user = await make_user(session)
    mine = await make_login_session(session, user=user)
    other = await make_login_session(session, user=user)
    already = await make_login_session(session, user=user, revoked=True)
    stranger = await make_login_session(session, user=await make_user(session))
    revoked = await AuthRepository(session).revoke_other_sessions(
        user_id=user.id, keep_session_id=mine.id)
    assert revoked == [other.id]
    for login, expect_revoked in ((mine, False), (other, True), (already, True), (stranger, False)):
        row = await session.get(LoginSession, login.id, populate_existing=True)
        assert row is not None
        assert (row.revoked_at is not None) is expect_revoked
