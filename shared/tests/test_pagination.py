"""Cursors round-trip, a key survives its cursor, and anything forged or damaged is a 422,
never a 500."""

from __future__ import annotations

from datetime import datetime

import pytest

from shared.errors import ValidationFailed
from shared.pagination import Key, decode_cursor, encode_cursor

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


def test_a_key_survives_its_cursor() -> None:
    key = Key(datetime(2026, 1, 2, 3, 4, 5, 678901), 2**53 - 1)
    assert Key.from_cursor(key.cursor()) == key
    assert Key.from_cursor(None) is None


@pytest.mark.parametrize("raw", [
    {"t": -1, "id": 1}, {"t": 10**20, "id": 1}, {"t": 0, "id": 0}, {"t": 0, "id": 2**53},
    {"t": 0}, {"t": 0, "id": 1, "x": 1}, {"t": "0", "id": 1}, {"t": 0.5, "id": 1},
    {"t": True, "id": 1},
])
def test_a_forged_key_cursor_is_refused(raw: dict[str, object]) -> None:
    with pytest.raises(ValidationFailed):
        Key.from_cursor(encode_cursor(raw))


@pytest.mark.parametrize("cursor", ["", "!!!", "bm90IGpzb24", "W10"])
def test_a_damaged_key_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(ValidationFailed):
        Key.from_cursor(cursor)
