"""What a client address counts as in the login throttle (auth/throttle.py)."""

from __future__ import annotations

import pytest

from user_service.auth.throttle import client_network


@pytest.mark.parametrize(("ip", "network"), [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
    ("2001:DB8:1:2:ffff::", "2001:db8:1:2::/64"),
    ("::ffff:203.0.113.7", "203.0.113.7"),  # an IPv4 client seen through a dual-stack socket
    ("unknown", "unknown"),
])
def test_ipv4_counts_alone_and_ipv6_by_its_64(ip: str, network: str) -> None:
    assert client_network(ip) == network
