"""The one clock the services write to MySQL with."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Naive UTC, as stored in DATETIME(6) columns."""
    return datetime.now(UTC).replace(tzinfo=None)
