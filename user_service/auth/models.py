"""Tables of sign-in: pending email codes, login sessions and their refresh tokens (users are in
user_service.users.models)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CHAR, BigInteger, Boolean, ForeignKey, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column

from shared.clock import utcnow
from user_service.db import Base, Timestamp


class EmailVerification(Base):
    """The one live code of an unverified user; a resend replaces it and resets the attempts."""

    __tablename__ = "email_verifications"

    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    code_hash: Mapped[str] = mapped_column(CHAR(64))
    expires_at: Mapped[datetime] = mapped_column(Timestamp)
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    # SHA-256 of the token the sign-up answered to its client alone (kept across resends).
    signup_token_hash: Mapped[str | None] = mapped_column(CHAR(64))
    # The sign-up replaced another whose code was still live: two parties claim the address,
    # so the code verifies only with the token (whoever set this password holds it) or from
    # the sign-up's own client network.
    contested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    signup_network: Mapped[str | None] = mapped_column(String(64))


class LoginSession(Base):
    """One login: its id is the `sid` claim of every access token and the family of its refresh tokens."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(CHAR(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    # Indexed for publishing recent revocations again when Redis lost them (auth/revocation.py).
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp, index=True)


class RefreshToken(Base):
    """Only the SHA-256 of the opaque token is kept, so a database leak yields no usable token."""

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        CHAR(32), ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(CHAR(64), unique=True)
    # Indexed for the periodic purge of expired tokens (user_service/auth/tasks.py).
    expires_at: Mapped[datetime] = mapped_column(Timestamp, index=True)
    used_at: Mapped[datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
