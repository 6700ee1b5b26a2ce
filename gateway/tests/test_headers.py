"""Header policy without a network: client addresses behind trusted proxies, identity headers."""

from __future__ import annotations

import pytest

from gateway.headers import TrustedProxies, client_address, is_identity_header

PROXIES = TrustedProxies(["10.0.0.0/24", "2001:db8:1::/64"])


def scope_of(peer: str, *forwarded_for: bytes) -> dict[str, object]:
    return {"client": (peer, 1234),
            "headers": [(b"x-forwarded-for", value) for value in forwarded_for]}


def test_the_first_untrusted_hop_from_the_right_is_the_client() -> None:
    scope = scope_of("10.0.0.5", b"6.6.6.6, 203.0.113.9, 10.0.0.4")
    assert client_address(scope, TrustedProxies([])) == "10.0.0.5"
    assert client_address(scope, PROXIES) == "203.0.113.9"
    assert client_address(scope_of("10.0.0.5"), PROXIES) == "10.0.0.5"
    # Several headers are one list, in order.
    assert client_address(scope_of("10.0.0.5", b"6.6.6.6", b"198.51.100.1"), PROXIES) \
        == "198.51.100.1"
    assert client_address(scope_of("2001:db8:1::9", b"2001:DB8:2::1"), PROXIES) == "2001:db8:2::1"


def test_a_client_that_connects_directly_cannot_choose_its_address() -> None:
    """The attack: with a proxy configured, a client that reaches the gateway itself sends a
    fresh X-Forwarded-For per request (a new throttle bucket each time, or a victim's)."""
    for forged in (b"1.2.3.4", b"10.0.0.4", b"203.0.113.9, 10.0.0.4"):
        assert client_address(scope_of("198.51.100.7", forged), PROXIES) == "198.51.100.7"


@pytest.mark.parametrize("garbage", [b"unknown", b"1.2.3.4.5", b"<script>", b"1.2.3.4:80",
                                     b"", b"999.1.1.1", b"\xff\xfe"])
def test_an_entry_that_is_not_an_address_ends_the_chain_at_the_last_trusted_hop(
        garbage: bytes) -> None:
    scope = scope_of("10.0.0.5", b"203.0.113.9, " + garbage + b", 10.0.0.4")
    assert client_address(scope, PROXIES) == "10.0.0.4"


@pytest.mark.parametrize("name", [b"x-user-id", b"x_user_id", b"x-session-id", b"x-internal-token",
                                  b"x_internal_anything", b"forwarded", b"x-forwarded-for"])
def test_identity_headers_in_any_spelling(name: bytes) -> None:
    assert is_identity_header(name)


@pytest.mark.parametrize("name", [b"authorization", b"content-type", b"idempotency-key", b"x-user"])
def test_ordinary_headers_are_not_identity_headers(name: bytes) -> None:
    assert not is_identity_header(name)
