"""Tables of accounts and sign-in: users, their pending email codes, login sessions, refresh tokens."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CHAR, BigInteger, Boolean, ForeignKey, Integer, String
from sqlalchemy.dialects.mysql import DATETIME
from sqlalchemy.orm import Mapped, mapped_column

from shared.schemas import utcnow
from user_service.db import Base

# Naive UTC with microseconds (shared.schemas.utcnow); second precision would make
# "issued in the same second" ambiguous for expiry checks.
Timestamp = DATETIME(fsp=6)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    # Stored lower-cased and compared byte for byte (no accent folding), so the unique index
    # is the one authority on "email taken" and agrees with the throttle's per-address keys.
    email: Mapped[str] = mapped_column(String(254, collation="utf8mb4_bin"), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(100))
    greeting: Mapped[str | None] = mapped_column(String(500))
    profile_image_url: Mapped[str | None] = mapped_column(String(2048))
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)


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


class LoginSession(Base):
    """One login: its id is the `sid` claim of every access token and the family of its refresh tokens."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(CHAR(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)


class RefreshToken(Base):
    """Only the SHA-256 of the opaque token is kept, so a database leak yields no usable token."""

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        CHAR(32), ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(CHAR(64), unique=True)
    # Indexed for the periodic purge of expired tokens (user_service/auth/housekeeping.py).
    expires_at: Mapped[datetime] = mapped_column(Timestamp, index=True)
    used_at: Mapped[datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
