"""social_service's own DeclarativeBase: its metadata holds only this service's tables."""

from __future__ import annotations

from typing import Any, TypeAlias

from sqlalchemy import Row
from sqlalchemy.dialects.mysql import DATETIME, INTEGER
from sqlalchemy.orm import DeclarativeBase

from shared.db import service_metadata


class Base(DeclarativeBase):
    metadata = service_metadata()


# Naive UTC with microseconds (shared.clock.utcnow): the feed orders by (created_at, id), and
# second precision would leave most of a busy second's posts ordered by id alone.
Timestamp = DATETIME(fsp=6)
# Counters are unsigned: a bug that took one below zero fails its statement instead of being
# stored (MariaDB's strict mode refuses the out-of-range value).
Counter = INTEGER(unsigned=True)

# A row of any columns (SQLAlchemy types rows by their column types; the repositories hand rows
# straight to a response model, which checks them).
AnyRow: TypeAlias = Row[*tuple[Any, ...]]
