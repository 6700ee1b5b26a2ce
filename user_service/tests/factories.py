"""Typed factories: rows made straight in the test schema, so a test of one rule need not sign
up through HTTP and SMTP first. Each flushes; the test commits when other connections (the app
under test) must see the rows."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy.ext.asyncio import AsyncSession

from shared.clock import utcnow
from shared.testing.identity import signed_identity_headers
from user_service.auth.models import EmailVerification, LoginSession, RefreshToken
from user_service.auth.passwords import HASHER
from user_service.auth.service import hash_code, hash_refresh_token
from user_service.users.models import User

PASSWORD = "correct horse battery"


@cache
def password_hash(password: str) -> str:
    # Argon2 costs ~25 ms; the same few passwords are hashed once per test run.
    return HASHER.hash(password)


def unique_email() -> str:
    return f"user-{uuid.uuid4().hex}@example.com"


async def make_user(
    session: AsyncSession,
    *,
    email: str | None = None,
    password: str = PASSWORD,
    name: str = "Min-ji",
    verified: bool = True,
    greeting: str | None = None,
    profile_image_url: str | None = None,
    created_at: datetime | None = None,
) -> User:
    now = created_at or utcnow()
    user = User(
        email=email or unique_email(), password_hash=password_hash(password), name=name,
        greeting=greeting, profile_image_url=profile_image_url, email_verified=verified,
        created_at=now, updated_at=now,
    )
    session.add(user)
    await session.flush()
    return user


async def make_verification(
    session: AsyncSession,
    *,
    user: User,
    code: str = "123456",
    expires_in: timedelta = timedelta(minutes=10),
    failed_attempts: int = 0,
) -> EmailVerification:
    verification = EmailVerification(
        user_id=user.id, code_hash=hash_code(user.id, code), expires_at=utcnow() + expires_in,
        failed_attempts=failed_attempts, created_at=utcnow(),
    )
    session.add(verification)
    await session.flush()
    return verification


async def make_login_session(
    session: AsyncSession,
    *,
    user: User,
    created_at: datetime | None = None,
    revoked: bool = False,
) -> LoginSession:
    now = created_at or utcnow()
    login = LoginSession(id=secrets.token_hex(16), user_id=user.id, created_at=now,
                         revoked_at=now if revoked else None)
    session.add(login)
    await session.flush()
    return login


async def make_refresh_token(
    session: AsyncSession,
    *,
    login_session: LoginSession,
    expires_at: datetime | None = None,
    used: bool = False,
) -> str:
    """Returns the opaque token (only its hash is stored)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(RefreshToken(
        session_id=login_session.id, token_hash=hash_refresh_token(token),
        expires_at=expires_at or now + timedelta(days=30), used_at=now if used else None,
        created_at=now,
    ))
    await session.flush()
    return token


def identity_headers_of(login_session: LoginSession) -> dict[str, str]:
    """What the gateway forwards for a token of this session."""
    return signed_identity_headers(login_session.user_id, login_session.id)
