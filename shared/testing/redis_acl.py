"""Each app as its own Redis ACL user in a test system (shared/redis_acl.py): a key, channel or
command an app needs and its user lacks is a NOPERM in the tests, not first in a deployment."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

from redis import Redis

from shared.redis_acl import ACCESS, acl_rules, redis_username
from shared.testing.datastores import TEST_NAMESPACE


def as_user(redis_url: str, username: str, password: str) -> str:
    """`redis_url` with another user and password."""
    parts = urlsplit(redis_url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{username}:{password}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _nodes(admin: Redis) -> list[Redis]:
    """Every node of the Redis that `admin` reaches: a cluster's nodes each keep their own ACL
    (users are not shared between them), so a user must be made on each."""
    if admin.info("cluster").get("cluster_enabled") != 1:
        return [admin]
    nodes = []
    for line in admin.execute_command("CLUSTER", "NODES").decode().splitlines():  # type: ignore[no-untyped-call]
        address = line.split()[1].split("@", 1)[0]  # host:port@bus-port
        host, port = address.rsplit(":", 1)
        nodes.append(Redis(host=host, port=int(port), username=admin.connection_pool
                           .connection_kwargs.get("username"),
                           password=admin.connection_pool.connection_kwargs.get("password")))
    return nodes


@contextmanager
def app_users(redis_url: str, prefix: str) -> Iterator[dict[str, str]]:
    """Each app's user on the Redis of `redis_url` (named for this run, a fresh password), for
    PUBSUB_PREFIX `prefix`, on every node when it is a cluster; yields each app's URL (by short
    name). The users go afterwards."""
    admin = Redis.from_url(redis_url)
    nodes = _nodes(admin)
    tag = TEST_NAMESPACE or "test"
    urls: dict[str, str] = {}
    created: list[str] = []
    try:
        for app in ACCESS:
            name, password = f"{tag}-{redis_username(app)}", secrets.token_urlsafe(16)
            created.append(name)
            for node in nodes:
                # redis-py's acl_setuser spells each rule kind apart; these are the ACL's own
                # words.
                node.execute_command(  # type: ignore[no-untyped-call]
                    "ACL", "SETUSER", name, "reset", "on", f">{password}",
                    *acl_rules(app, prefix))
            urls[app] = as_user(redis_url, name, password)
        yield urls
    finally:
        for node in nodes:
            for name in created:
                node.acl_deluser(name)
            if node is not admin:
                node.close()
        admin.close()
