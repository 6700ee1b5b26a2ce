"""Request parameters every social router shares: ids in paths and queries, and the page size."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from shared.contracts import MAX_ID
from shared.pagination import Cursor, Limit

# Ids are positive integers below 2**53 (API.md); anything else is a 422, never a lookup.
PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
QueryId = Annotated[int | None, Query(ge=1, le=MAX_ID)]
DEFAULT_LIMIT = 20

__all__ = ["DEFAULT_LIMIT", "Cursor", "Limit", "PathId", "QueryId"]
