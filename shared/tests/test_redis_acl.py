"""Each app's Redis user touches only its own keys and channels and runs only data commands: one
service cannot read (or write) another's keys. The attacks, sent as the users deployments create
(shared/redis_acl.py), against the test Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis import Redis
from redis.exceptions import NoPermissionError

from shared.contracts import REVOCATION_EPOCH_KEY, revoked_session_key
from shared.testing.datastores import TEST_PUBSUB_PREFIX
from shared.testing.redis_acl import app_users

PREFIX = TEST_PUBSUB_PREFIX


@pytest.fixture(scope="module")
def users(redis_url: str) -> Iterator[dict[str, Redis]]:
    with app_users(redis_url, PREFIX) as urls:
        clients = {app: Redis.from_url(url, decode_responses=True) for app, url in urls.items()}
        yield clients
        for client in clients.values():
            client.close()


def refused(call: object) -> None:
    assert callable(call)
    with pytest.raises(NoPermissionError):
        call()


def test_a_service_cannot_read_or_write_another_services_keys(users: dict[str, Redis]) -> None:
    order, product, social = users["order"], users["product"], users["social"]
    # Its own keys: yes.
    order.set("idem:orders:1:acl-test", "1", ex=5)
    assert order.get("idem:orders:1:acl-test") == "1"
    # Another service's: no, neither read nor written.
    refused(lambda: order.get(REVOCATION_EPOCH_KEY))
    refused(lambda: order.get("product:{1}:detail"))
    refused(lambda: product.set("idem:orders:1:acl-test", "forged"))
    refused(lambda: social.hgetall("{p:1}:meta"))
    refused(lambda: users["payment"].get("idem:orders:1:acl-test"))


def test_the_gateway_reads_revocations_and_cannot_write_them(users: dict[str, Redis]) -> None:
    """A compromised gateway cannot undo a logout (delete a revocation) or forge the epoch."""
    gateway, user = users["gateway"], users["user"]
    user.set(revoked_session_key("a" * 32), "1", ex=5)
    assert gateway.get(revoked_session_key("a" * 32)) == "1"
    refused(lambda: gateway.delete(revoked_session_key("a" * 32)))
    refused(lambda: gateway.set(REVOCATION_EPOCH_KEY, "0"))
    refused(lambda: gateway.get("auth:limit:signup:addr:10.0.0.0"))
    gateway.incr(f"{PREFIX}rate:acl-test")  # its own counters
    gateway.delete(f"{PREFIX}rate:acl-test")
    refused(lambda: gateway.publish(f"{PREFIX}edge-answers", "{}"))  # only stock_service speaks


def test_channels_are_only_for_the_apps_that_use_them(users: dict[str, Redis]) -> None:
    users["stock"].publish(f"{PREFIX}stock-levels", "{}")
    refused(lambda: users["social"].publish(f"{PREFIX}stock-levels", "{}"))
    refused(lambda: users["stock"].publish("another-deployment:stock-levels", "{}"))


@pytest.mark.parametrize("command", [("FLUSHDB",), ("KEYS", "*"), ("CONFIG", "GET", "*"),
                                     ("ACL", "LIST"), ("CLIENT", "LIST"), ("SHUTDOWN",)])
def test_no_app_may_run_administrative_commands(users: dict[str, Redis],
                                                command: tuple[str, ...]) -> None:
    for app, client in users.items():
        with pytest.raises(NoPermissionError):
            client.execute_command(*command)  # type: ignore[no-untyped-call]
        assert client.ping(), app
