"""Header policy without a network: client addresses behind trusted proxies, identity headers."""

from __future__ import annotations

import pytest

from gateway.headers import client_address, is_identity_header


def test_client_address_trusts_only_configured_proxies() -> None:
    scope = {"client": ("10.0.0.5", 1234),
             "headers": [(b"x-forwarded-for", b"6.6.6.6, 203.0.113.9, 10.0.0.4")]}
    assert client_address(scope, 0) == "10.0.0.5"
    assert client_address(scope, 1) == "10.0.0.4"
    assert client_address(scope, 2) == "203.0.113.9"
    assert client_address({"client": ("10.0.0.5", 1), "headers": []}, 1) == "10.0.0.5"


@pytest.mark.parametrize("name", [b"x-user-id", b"x_user_id", b"x-session-id", b"x-internal-token",
                                  b"x_internal_anything", b"forwarded", b"x-forwarded-for"])
def test_identity_headers_in_any_spelling(name: bytes) -> None:
    assert is_identity_header(name)


@pytest.mark.parametrize("name", [b"authorization", b"content-type", b"idempotency-key", b"x-user"])
def test_ordinary_headers_are_not_identity_headers(name: bytes) -> None:
    assert not is_identity_header(name)
