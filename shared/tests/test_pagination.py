"""Cursors round-trip, and anything forged or damaged is a 422, never a 500."""

from __future__ import annotations

import pytest

from shared.errors import ValidationFailed
from shared.pagination import decode_cursor, encode_cursor

FIELDS = {"created_at": str, "id": int}


def test_round_trip() -> None:
    key = {"created_at": "2026-11-25T10:00:00.000001Z", "id": 42}
    assert decode_cursor(encode_cursor(key), fields=FIELDS) == key


def test_no_cursor_is_the_first_page() -> None:
    assert decode_cursor(None, fields=FIELDS) is None


@pytest.mark.parametrize("cursor", [
    "", "not base64 !!", "e30",  # e30 = "{}"
    encode_cursor({"id": 1}),  # a field missing
    encode_cursor({"created_at": "x", "id": 1, "extra": 2}),  # a field too many
    encode_cursor({"created_at": "x", "id": "1"}),  # a string where an int belongs
    encode_cursor({"created_at": "x", "id": True}),  # bool is an int to Python, not to us
    "W10",  # "[]"
])
def test_bad_cursors_are_validation_errors(cursor: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        decode_cursor(cursor, fields=FIELDS)
    assert raised.value.status == 422
    assert raised.value.extra["errors"][0]["loc"] == ["query", "cursor"]
