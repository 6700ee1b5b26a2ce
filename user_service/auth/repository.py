"""Every SQL statement of accounts, verification codes, sessions and refresh tokens."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, exists, select, update
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.clock import utcnow
from user_service.auth.models import EmailVerification, LoginSession, RefreshToken
from user_service.users.models import User


class AuthRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_user(self, user_id: int, *, for_update: bool = False,
                       fresh: bool = False) -> User | None:
        """`fresh`: read the row again even if this session holds it (and None if it is gone)."""
        return await self.session.get(User, user_id, with_for_update=for_update,
                                      populate_existing=fresh)

    async def current_password_hash(self, user_id: int) -> str | None:
        """The committed hash, read under a shared lock held until this transaction ends: a
        password change (which locks the row for update) waits for it, or it for the change."""
        result = await self.session.execute(
            select(User.password_hash).where(User.id == user_id).with_for_update(read=True))
        return result.scalar_one_or_none()

    async def get_user_by_email(self, email: str, *, for_update: bool = False) -> User | None:
        query = select(User).where(User.email == email)
        if for_update:
            query = query.with_for_update()
        result = await self.session.execute(query)
        return result.scalar_one_or_none()

    async def create_user(
        self,
        *,
        email: str,
        password_hash: str,
        name: str,
        greeting: str | None,
        profile_image_url: str | None,
    ) -> User:
        """Raises IntegrityError if the email is taken (the unique index decides races)."""
        now = utcnow()
        user = User(
            email=email,
            password_hash=password_hash,
            name=name,
            greeting=greeting,
            profile_image_url=profile_image_url,
            email_verified=False,
            created_at=now,
            updated_at=now,
        )
        self.session.add(user)
        await self.session.flush()
        return user

    async def delete_unverified_user(self, email: str) -> bool:
        """The account of an address nobody has proven to own yet, replaced by a new sign-up.
        True if its code was still live (someone else may be about to verify it)."""
        live = await self.session.execute(
            select(EmailVerification.user_id).join(User, User.id == EmailVerification.user_id)
            .where(User.email == email, User.email_verified.is_(False),
                   EmailVerification.expires_at > utcnow()).with_for_update())
        contested = live.first() is not None
        await self.session.execute(
            delete(User).where(User.email == email, User.email_verified.is_(False))
            .execution_options(synchronize_session=False)
        )
        return contested

    async def delete_unverified_users(self, *, created_before: datetime, limit: int) -> int:
        """Accounts never verified since before `created_before` (their codes and sessions go
        with them, by the foreign keys)."""
        ids = (select(User.id).where(User.email_verified.is_(False),
                                     User.created_at < created_before).limit(limit))
        found = list((await self.session.execute(ids)).scalars())
        if not found:
            return 0
        await self.session.execute(
            delete(User).where(User.id.in_(found), User.email_verified.is_(False)))
        return len(found)

    async def set_password_hash(self, user: User, password_hash: str) -> None:
        user.password_hash = password_hash
        user.updated_at = utcnow()
        await self.session.flush()

    async def replace_verification_code(
        self, *, user_id: int, code_hash: str, expires_at: datetime,
        signup_token_hash: str | None = None, contested: bool = False,
        signup_network: str | None = None,
    ) -> None:
        """One live code per user: a new one replaces the old and resets its attempts (the
        sign-up's token and contest, set by the sign-up's first code, stay as they are)."""
        now = utcnow()
        statement = insert(EmailVerification).values(
            user_id=user_id, code_hash=code_hash, expires_at=expires_at,
            failed_attempts=0, created_at=now, signup_token_hash=signup_token_hash,
            contested=contested, signup_network=signup_network,
        )
        await self.session.execute(
            statement.on_duplicate_key_update(
                code_hash=statement.inserted.code_hash,
                expires_at=statement.inserted.expires_at,
                failed_attempts=0,
                created_at=statement.inserted.created_at,
            )
        )

    async def get_verification(self, user_id: int) -> EmailVerification | None:
        return await self.session.get(EmailVerification, user_id)

    async def count_code_attempt(self, user_id: int, *, code_hash: str, max_attempts: int) -> bool:
        """Counts an attempt at this code; False if it is gone, replaced or used up."""
        result = await self.session.execute(
            update(EmailVerification)
            .where(
                EmailVerification.user_id == user_id,
                EmailVerification.code_hash == code_hash,
                EmailVerification.failed_attempts < max_attempts,
            )
            .values(failed_attempts=EmailVerification.failed_attempts + 1)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def mark_email_verified(self, user: User, *, code_hash: str) -> bool:
        """Spends the code (only this code: a newer one stays void) and verifies the account;
        False if the code was spent already (a concurrent request got there first)."""
        spent = await self.session.execute(
            delete(EmailVerification).where(
                EmailVerification.user_id == user.id, EmailVerification.code_hash == code_hash
            )
        )
        if not spent.rowcount:  # type: ignore[attr-defined]
            return False
        user.email_verified = True
        user.updated_at = utcnow()
        await self.session.flush()
        return True

    async def create_session(self, *, session_id: str, user_id: int,
                             created_at: datetime) -> None:
        self.session.add(LoginSession(id=session_id, user_id=user_id, created_at=created_at))
        await self.session.flush()

    async def add_refresh_token(
        self, *, session_id: str, token_hash: str, expires_at: datetime
    ) -> None:
        self.session.add(
            RefreshToken(
                session_id=session_id, token_hash=token_hash,
                expires_at=expires_at, created_at=utcnow(),
            )
        )
        await self.session.flush()

    async def get_refresh_token_for_update(
        self, token_hash: str
    ) -> tuple[RefreshToken, LoginSession] | None:
        """Locks the token and its session: concurrent presentations of one token serialize here."""
        result = await self.session.execute(
            select(RefreshToken, LoginSession)
            .join(LoginSession, LoginSession.id == RefreshToken.session_id)
            .where(RefreshToken.token_hash == token_hash)
            .with_for_update()
        )
        row = result.one_or_none()
        return None if row is None else (row[0], row[1])

    async def mark_refresh_token_used(self, token: RefreshToken) -> None:
        token.used_at = utcnow()
        await self.session.flush()

    async def revoke_session(self, session_id: str, *, user_id: int | None = None) -> bool:
        """True if this revoked the session; False if it is unknown, not the user's or revoked."""
        statement = (
            update(LoginSession)
            .where(LoginSession.id == session_id, LoginSession.revoked_at.is_(None))
            .values(revoked_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if user_id is not None:
            statement = statement.where(LoginSession.user_id == user_id)
        result = await self.session.execute(statement)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def revoke_other_sessions(self, *, user_id: int, keep_session_id: str | None) -> list[str]:
        """Revoke every unrevoked session of the user but one; returns the ids it revoked."""
        query = select(LoginSession.id).where(
            LoginSession.user_id == user_id, LoginSession.revoked_at.is_(None)
        )
        if keep_session_id is not None:
            query = query.where(LoginSession.id != keep_session_id)
        session_ids = list((await self.session.execute(query.with_for_update())).scalars())
        if session_ids:
            await self.session.execute(
                update(LoginSession)
                .where(LoginSession.id.in_(session_ids))
                .values(revoked_at=utcnow())
                .execution_options(synchronize_session=False)
            )
        return session_ids

    async def sessions_revoked_since(self, since: datetime) -> list[str]:
        query = select(LoginSession.id).where(LoginSession.revoked_at >= since)
        return list((await self.session.execute(query)).scalars())

    async def delete_expired_refresh_tokens(self, *, expired_before: datetime, limit: int) -> int:
        ids = select(RefreshToken.id).where(RefreshToken.expires_at < expired_before).limit(limit)
        found = list((await self.session.execute(ids)).scalars())
        if not found:
            return 0
        await self.session.execute(delete(RefreshToken).where(RefreshToken.id.in_(found)))
        return len(found)

    async def delete_sessions_without_tokens(self, *, created_before: datetime, limit: int) -> int:
        """Sessions whose every refresh token has expired and been purged: nothing can use them."""
        ids = (
            select(LoginSession.id)
            .where(LoginSession.created_at < created_before)
            .where(~exists().where(RefreshToken.session_id == LoginSession.id))
            .limit(limit)
        )
        found = list((await self.session.execute(ids)).scalars())
        if not found:
            return 0
        await self.session.execute(delete(LoginSession).where(LoginSession.id.in_(found)))
        return len(found)
