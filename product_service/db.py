"""product_service's own DeclarativeBase: its metadata holds only this service's tables."""

from __future__ import annotations

from sqlalchemy.dialects.mysql import DATETIME
from sqlalchemy.orm import DeclarativeBase

from shared.db import service_metadata


class Base(DeclarativeBase):
    metadata = service_metadata()


# Naive UTC with microseconds (shared.clock.utcnow): the list orders by (created_at, id).
Timestamp = DATETIME(fsp=6)
