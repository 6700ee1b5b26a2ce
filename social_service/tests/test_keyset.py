"""Cursors: a key survives the round trip; anything else is a 422, never a 500."""

from __future__ import annotations

from datetime import datetime

import pytest

from shared.errors import ValidationFailed
from shared.pagination import encode_cursor
from social_service.keyset import Key


def test_a_key_survives_its_cursor() -> None:
    key = Key(datetime(2026, 1, 2, 3, 4, 5, 678901), 2**53 - 1)
    assert Key.from_cursor(key.cursor()) == key
    assert Key.from_cursor(None) is None


@pytest.mark.parametrize("raw", [
    {"t": -1, "id": 1}, {"t": 10**20, "id": 1}, {"t": 0, "id": 0}, {"t": 0, "id": 2**53},
    {"t": 0}, {"t": 0, "id": 1, "x": 1}, {"t": "0", "id": 1}, {"t": 0.5, "id": 1},
    {"t": True, "id": 1},
])
def test_a_forged_cursor_is_refused(raw: dict[str, object]) -> None:
    with pytest.raises(ValidationFailed):
        Key.from_cursor(encode_cursor(raw))


@pytest.mark.parametrize("cursor", ["", "!!!", "bm90IGpzb24", "W10"])
def test_a_damaged_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(ValidationFailed):
        Key.from_cursor(cursor)
