"""Client request ids are kept only when they cannot smuggle anything into logs."""

from __future__ import annotations

import pytest

from shared.request_context import sanitize_request_id


def test_sane_id_is_kept() -> None:
    assert sanitize_request_id("client-req:0001.a_b") == "client-req:0001.a_b"


@pytest.mark.parametrize("value", [None, "", "short", "x" * 129, "has space here", "new\nline-xx",
                                   '"quote"-xxxx', "ünïcode-xxxx", "trailing-newline\n"])
def test_odd_ids_are_replaced(value: str | None) -> None:
    replaced = sanitize_request_id(value)
    assert replaced != value
    assert len(replaced) == 32
    assert replaced.isalnum()
