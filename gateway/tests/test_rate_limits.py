"""POST /api/v1/orders and POST /api/v1/payments limited per user and per client network at
the gateway: 429 rate_limited with Retry-After, never forwarded."""

from __future__ import annotations

import asyncio
import ipaddress
import uuid
from collections.abc import Awaitable, Callable, Iterator

import httpx
import pytest
from redis.asyncio import Redis

from gateway.app import create_app
from gateway.rate_limits import RateLimiter, network_of
from gateway.tests.conftest import Rig, gateway_settings
from shared.testing.net import ThreadedServer


def test_networks_are_slash_24_and_slash_48_by_default() -> None:
    assert network_of("203.0.113.77", ipv4_prefix=24, ipv6_prefix=48) == "203.0.113.0/24"
    assert network_of("2001:db8:1:2::5", ipv4_prefix=24, ipv6_prefix=48) == "2001:db8:1::/48"
    assert network_of("not an address", ipv4_prefix=24, ipv6_prefix=48) == "not an address"


@pytest.mark.parametrize("address", ["203.0.113.77", "0.0.0.0", "255.255.255.255", "10.1.2.3",
                                     "01.2.3.4", "1.2.3", "1.2.3.4 ", "::ffff:1.2.3.4",
                                     "2001:db8::1", ""])
@pytest.mark.parametrize("prefix", [8, 16, 23, 24, 32])
def test_networks_are_those_the_standard_library_names(address: str, prefix: int) -> None:
    # IPv4 is masked by hand (the crowd's every request asks); it must name what ipaddress does.
    try:
        expected = str(ipaddress.ip_network(f"{ipaddress.ip_address(address)}/"
                                            f"{prefix if '.' in address and ':' not in address else 48}",
                                            strict=False))
    except ValueError:
        expected = address or "unknown"
    assert network_of(address, ipv4_prefix=prefix, ipv6_prefix=48) == expected


async def test_a_check_that_fails_in_any_way_lets_its_batch_through() -> None:
    class Broken:
        """A client whose script fails with an error that is no RedisError."""

        def register_script(self, script: str) -> Callable[..., Awaitable[list[int]]]:
            async def call(**_: object) -> list[int]:
                raise RuntimeError("a reply that did not parse")

            return call

    limiter = RateLimiter(Broken(), prefix="", window_seconds=1,  # type: ignore[arg-type]
                          per_user=1, per_network=1, ipv4_prefix=24, ipv6_prefix=48)
    answers = await asyncio.wait_for(asyncio.gather(*(
        limiter.retry_after("POST /api/v1/orders", user_id=str(n), client_ip="203.0.113.9")
        for n in range(3))), 2)
    assert answers == [None, None, None]


@pytest.fixture(scope="module")
def limited(rig: Rig, redis_url: str) -> Iterator[str]:
    # The client address comes from X-Forwarded-For (the test client on loopback is the trusted
    # proxy), so a test can speak from many networks.
    settings = gateway_settings({n: s.url for n, s in rig.upstreams.items()}, redis_url,
                                rate_limit_per_user=3, rate_limit_per_network=5,
                                rate_limit_window_seconds=30,
                                trusted_proxy_networks=["127.0.0.1/32"])
    gateway = ThreadedServer(create_app(settings)).start()
    yield gateway.url
    gateway.stop()


async def post(http: httpx.AsyncClient, rig: Rig, path: str, *, user: str,
               network: str) -> httpx.Response:
    return await http.post(path, json={"product_id": 1, "quantity": 1},
                           headers={"Authorization": f"Bearer {rig.token(sub=user)}",
                                    "X-Forwarded-For": f"{network}.{uuid.uuid4().int % 250 + 1}"})


def a_network() -> str:
    value = uuid.uuid4().int
    return f"10.{value % 250}.{value // 250 % 250}"


def a_user() -> str:
    return str(uuid.uuid4().int % 10**9 + 1000)


async def test_a_user_past_the_limit_is_refused_with_retry_after(limited: str,
                                                                 rig: Rig) -> None:
    user = a_user()
    async with httpx.AsyncClient(base_url=limited, timeout=5) as http:
        answers = [await post(http, rig, "/api/v1/orders", user=user, network=a_network())
                   for _ in range(4)]
        assert [a.status_code for a in answers[:3]] == [200, 200, 200]  # the echo upstream
        refused = answers[3]
        assert refused.status_code == 429
        assert refused.json()["code"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 30
        assert "x-upstream" not in refused.headers
        # Payments are counted apart; another user is not affected.
        paid = await post(http, rig, "/api/v1/payments", user=user, network=a_network())
        assert paid.status_code == 200
        other = await post(http, rig, "/api/v1/orders", user=a_user(), network=a_network())
        assert other.status_code == 200


async def test_a_network_past_the_limit_is_refused_whoever_asks(limited: str,
                                                                rig: Rig) -> None:
    network = a_network()
    async with httpx.AsyncClient(base_url=limited, timeout=5) as http:
        answers = await asyncio.gather(*(post(http, rig, "/api/v1/orders", user=a_user(),
                                              network=network) for _ in range(8)))
        assert sorted(a.status_code for a in answers) == [200] * 5 + [429] * 3
        elsewhere = await post(http, rig, "/api/v1/orders", user=a_user(), network=a_network())
        assert elsewhere.status_code == 200


async def test_other_routes_are_not_limited(limited: str, rig: Rig) -> None:
    user = a_user()
    async with httpx.AsyncClient(base_url=limited, timeout=5) as http:
        for _ in range(5):
            response = await http.get("/api/v1/orders", headers={
                "Authorization": f"Bearer {rig.token(sub=user)}"})
            assert response.status_code == 200


async def test_one_batch_counts_each_route_apart(redis: Redis) -> None:
    """Orders and payments asked in one loop turn: one call per route (their keys hash apart),
    each counted against its own window, in arrival order."""
    limiter = RateLimiter(redis, prefix=f"test-{uuid.uuid4().hex}:", window_seconds=30,
                          per_user=2, per_network=0, ipv4_prefix=24, ipv6_prefix=48)
    user = a_user()
    answers = await asyncio.gather(*(
        limiter.retry_after(route, user_id=user, client_ip="203.0.113.9")
        for route in ["POST /api/v1/orders", "POST /api/v1/payments"] * 3))
    assert answers[:4] == [None] * 4
    assert all(answer is not None and 1 <= answer <= 30 for answer in answers[4:])
    keys = [key async for key in redis.scan_iter(match=f"{limiter.prefix}rate:*")]
    assert sorted(keys) == sorted([f"{limiter.prefix}rate:{{POST/api/v1/orders}}:user:{user}",
                                   f"{limiter.prefix}rate:{{POST/api/v1/payments}}:user:{user}"])
    assert all(0 < ttl <= 30_000 for ttl in [await redis.pttl(key) for key in keys])
