"""Keyset pagination, the one way every list pages: the `limit` and `cursor` query parameters,
the opaque cursor (base64url JSON, validated on the way back in), the (created_at, id) key a
cursor names, and the SQL condition "past this key" in either direction, with the key bound as
parameters so each list's statements are built (and compiled) once.

A key is unique and never changes once a row exists, so a page boundary stays put while rows
are added or removed elsewhere: no page repeats or skips a row that was there all along. Every
list's cursor has the same shape, so a cursor of one list that decodes is taken by another as a
position (the page after it), not refused.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import Query
from sqlalchemy import BindParameter, ColumnElement, and_, bindparam, or_

from shared.contracts import MAX_ID
from shared.errors import ValidationFailed

T = TypeVar("T")

Limit = Annotated[int, Query(ge=1, le=100, description="Page size (1..100)")]
# base64url without padding: the schema says its alphabet; what it decodes to stays opaque.
Cursor = Annotated[str | None, Query(max_length=512, pattern=r"^[A-Za-z0-9_-]+$",
                                     description="Opaque cursor from next_cursor")]


def _invalid_cursor() -> ValidationFailed:
    return ValidationFailed("The cursor is not valid.", loc=("query", "cursor"))


def encode_cursor(key: dict[str, Any]) -> str:
    raw = json.dumps(key, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str | None, *, fields: dict[str, type]) -> dict[str, Any] | None:
    """Return the key, or None for the first page; a forged or damaged cursor is a 422."""
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _invalid_cursor() from None
    if not isinstance(key, dict) or set(key) != set(fields):
        raise _invalid_cursor()
    for name, kind in fields.items():
        value = key[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise _invalid_cursor()
    return key


_EPOCH = datetime(1970, 1, 1)
_ONE_MICROSECOND = timedelta(microseconds=1)
# The largest time a DATETIME holds; a forged cursor past it would overflow datetime (a 500).
_MAX_MICROS = (datetime(9999, 12, 31, 23, 59, 59, 999999) - _EPOCH) // _ONE_MICROSECOND


@dataclass(frozen=True, slots=True, order=True)
class Key:
    """Orders as the lists do: by created_at, then id."""

    created_at: datetime  # naive UTC, as stored
    id: int

    @property
    def micros(self) -> int:
        return (self.created_at - _EPOCH) // _ONE_MICROSECOND

    @classmethod
    def from_micros(cls, micros: int, id_: int) -> Key:
        return cls(_EPOCH + timedelta(microseconds=micros), id_)

    def cursor(self) -> str:
        return encode_cursor({"t": self.micros, "id": self.id})

    @classmethod
    def from_cursor(cls, cursor: str | None) -> Key | None:
        """The key a cursor names, None for the first page; a damaged or forged one is a 422."""
        raw = decode_cursor(cursor, fields={"t": int, "id": int})
        if raw is None:
            return None
        if not (0 <= raw["t"] <= _MAX_MICROS and 1 <= raw["id"] <= MAX_ID):
            raise _invalid_cursor()
        return cls.from_micros(raw["t"], raw["id"])


def older_than(created_at: Any, id_: Any) -> ColumnElement[bool]:
    """Rows after the key bound as `key_created_at`, `key_id` (key_params) in newest-first
    order. Spelt out rather than as a row comparison, which MariaDB does not turn into an index
    range."""
    at: BindParameter[Any] = bindparam("key_created_at")
    id_after: BindParameter[Any] = bindparam("key_id")
    return or_(created_at < at, and_(created_at == at, id_ < id_after))


def newer_than(created_at: Any, id_: Any) -> ColumnElement[bool]:
    """Rows after the bound key in oldest-first order."""
    at: BindParameter[Any] = bindparam("key_created_at")
    id_after: BindParameter[Any] = bindparam("key_id")
    return or_(created_at > at, and_(created_at == at, id_ > id_after))


def key_params(key: Key | None) -> dict[str, Any]:
    """The values older_than and newer_than bind (none for a first page)."""
    return {} if key is None else {"key_created_at": key.created_at, "key_id": key.id}


def row_key(row: Mapping[str, Any]) -> Key:
    """The key of a row read with `created_at` and `id` columns."""
    return Key(row["created_at"], row["id"])


def page_of(rows: Sequence[T], limit: int, key_of: Callable[[T], Key]) -> tuple[list[T], str | None]:
    """`rows` were fetched with limit + 1: the extra one only tells whether there is a next page."""
    items = list(rows[:limit])
    next_cursor = key_of(items[-1]).cursor() if len(rows) > limit else None
    return items, next_cursor
