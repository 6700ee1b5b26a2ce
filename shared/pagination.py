"""Opaque cursors: base64url JSON of the last row's sort key, validated on the way back in."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any

from fastapi import Query

from shared.errors import ValidationFailed

Limit = Annotated[int, Query(ge=1, le=100, description="Page size (1..100)")]
Cursor = Annotated[str | None, Query(max_length=512, description="Opaque cursor from next_cursor")]


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
        raise ValidationFailed("The cursor is not valid.", loc=("query", "cursor")) from None
    if not isinstance(key, dict) or set(key) != set(fields):
        raise ValidationFailed("The cursor is not valid.", loc=("query", "cursor"))
    for name, kind in fields.items():
        value = key[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValidationFailed("The cursor is not valid.", loc=("query", "cursor"))
    return key
