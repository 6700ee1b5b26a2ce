"""The rules of auth/service.py called directly, on rows the factories made: the parts whose
point is what happens under concurrency or when a request fails halfway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TypeVar

from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from shared.contracts import revoked_session_key
from shared.db import create_sessionmaker
from shared.errors import ProblemError
from shared.testing.apps import RunningApp
from user_service.auth.models import EmailVerification, LoginSession
from user_service.auth.passwords import PasswordHasher
from user_service.auth.service import AuthService
from user_service.auth.throttle import address_failures_key, slow_lane_key
from user_service.tests.factories import (
    PASSWORD,
    make_login_session,
    make_refresh_token,
    make_user,
    make_verification,
)
from user_service.tests.helpers import unique_ip
from user_service.users.models import User

T = TypeVar("T")


@asynccontextmanager
async def auth_service(service: RunningApp, engine: AsyncEngine, *,
                       passwords: PasswordHasher | None = None) -> AsyncIterator[AuthService]:
    """An AuthService on its own request-like session: committed if the call returns."""
    resources = service.resources
    async with create_sessionmaker(engine)() as session:
        yield AuthService(
            session=session, redis=resources.datastores.redis, settings=resources.settings,
            signer=resources.signer, passwords=passwords or resources.passwords,
            mailer=resources.mailer, throttle=resources.throttle, limiter=resources.limiter,
        )
        await session.commit()


async def outcome(service: RunningApp, engine: AsyncEngine,
                  call: Callable[[AuthService], Awaitable[T]], *,
                  passwords: PasswordHasher | None = None) -> T | str:
    """The call's result, or the code of the problem it raised (its transaction rolled back)."""
    try:
        async with auth_service(service, engine, passwords=passwords) as auth:
            return await call(auth)
    except ProblemError as problem:
        return problem.code


class CountingHasher(PasswordHasher):
    """Real Argon2id, and a count of the password checks it ran."""

    checks = 0

    async def verify(self, password: str, password_hash: str | None) -> bool:
        self.checks += 1
        return await super().verify(password, password_hash)


async def test_a_refused_login_costs_no_password_check(
    service: RunningApp, db_engine: AsyncEngine, session: AsyncSession, redis: Redis
) -> None:
    user = await make_user(session)
    await session.commit()
    with ThreadPoolExecutor(max_workers=1) as executor:
        hasher = await CountingHasher.create(executor)

        async def attempt(password: str, ip: str) -> object:
            return await outcome(service, db_engine, lambda auth: auth.login(
                user.email, password, client_ip=ip), passwords=hasher)

        for _ in range(10):
            assert await attempt("guess", "10.20.0.1") == "invalid_credentials"
        assert hasher.checks == 10
        # Past the limit for this email from this address, and past the address's own limit.
        assert await attempt(PASSWORD, "10.20.0.1") == "too_many_attempts"
        await redis.set(address_failures_key("10.20.0.2"), 100, ex=900)
        await redis.set(slow_lane_key("10.20.0.2"), 1, ex=60)  # as the 100th failure left it
        assert await attempt(PASSWORD, "10.20.0.2") == "too_many_attempts"
    assert hasher.checks == 10


async def test_a_burst_of_wrong_codes_gets_no_more_than_five_checked(
    service: RunningApp, db_engine: AsyncEngine, session: AsyncSession
) -> None:
    user = await make_user(session, verified=False)
    await make_verification(session, user=user, code="123456")
    await session.commit()
    results = await asyncio.gather(*(
        outcome(service, db_engine,
                lambda auth: auth.verify_email(user.email, "654321", client_ip=unique_ip()))
        for _ in range(12)
    ))
    assert sorted(map(str, results)) == ["invalid_code"] * 5 + ["too_many_attempts"] * 7
    # The code is void now, the right one included: the counts outlived the 422s' rollbacks.
    right = await outcome(service, db_engine,
                          lambda auth: auth.verify_email(user.email, "123456", client_ip=unique_ip()))
    assert right == "too_many_attempts"


async def test_the_right_code_on_the_last_allowed_attempt_verifies(
    service: RunningApp, db_engine: AsyncEngine, session: AsyncSession
) -> None:
    user = await make_user(session, verified=False)
    await make_verification(session, user=user, code="123456", failed_attempts=4)
    await session.commit()
    assert await outcome(service, db_engine,
                         lambda auth: auth.verify_email(user.email, "123456", client_ip=unique_ip())) is None
    verified = await session.get(User, user.id, populate_existing=True)
    assert verified is not None
    assert verified.email_verified
    assert await session.get(EmailVerification, user.id, populate_existing=True) is None


async def test_a_reused_refresh_token_revokes_its_session_though_the_request_fails(
    service: RunningApp, db_engine: AsyncEngine, session: AsyncSession, redis: Redis
) -> None:
    user = await make_user(session)
    login = await make_login_session(session, user=user)
    spent = await make_refresh_token(session, login_session=login, used=True)
    await session.commit()
    assert await outcome(service, db_engine, lambda auth: auth.refresh(spent)) == "token_revoked"
    revoked = await session.get(LoginSession, login.id, populate_existing=True)
    assert revoked is not None
    assert revoked.revoked_at is not None
    assert await redis.get(revoked_session_key(login.id)) == "1"


class GatedHasher(PasswordHasher):
    """Real Argon2id; each check, once done, waits at a gate: the race made to happen."""

    reached: asyncio.Event
    release: asyncio.Event

    async def verify(self, password: str, password_hash: str | None) -> bool:
        matches = await super().verify(password, password_hash)
        self.reached.set()
        await self.release.wait()
        return matches


async def test_a_login_racing_a_password_change_does_not_outlive_it(
    service: RunningApp, db_engine: AsyncEngine, session: AsyncSession
) -> None:
    # The login checked the old password; the change commits (revoking every session it can
    # see) before the login writes its session. That session must not be the one that lives.
    user = await make_user(session)
    changer = await make_login_session(session, user=user)
    await session.commit()
    with ThreadPoolExecutor(max_workers=1) as executor:
        hasher = await GatedHasher.create(executor)
        hasher.reached, hasher.release = asyncio.Event(), asyncio.Event()
        racing_login = asyncio.create_task(outcome(service, db_engine, lambda auth: auth.login(
            user.email, PASSWORD, client_ip=unique_ip()), passwords=hasher))
        await hasher.reached.wait()
        changed = await outcome(service, db_engine, lambda auth: auth.change_password(
            user.id, changer.id, current_password=PASSWORD, new_password="a brand new secret",
            client_ip=unique_ip()))
        assert changed is None
        hasher.release.set()
        await racing_login
    live = (await session.execute(select(LoginSession.id).where(
        LoginSession.user_id == user.id, LoginSession.revoked_at.is_(None)))).scalars().all()
    assert list(live) == [changer.id]
