"""The accounts table: one row per user, with the profile fields."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from shared.clock import utcnow
from user_service.db import Base, Timestamp


class User(Base):
    __tablename__ = "users"
    # For the purge of unverified accounts older than a day (the auth domain's tasks.py).
    __table_args__ = (Index("ix_users_email_verified_created_at", "email_verified", "created_at"),)

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
