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


@contextmanager
def app_users(redis_url: str, prefix: str) -> Iterator[dict[str, str]]:
    """Each app's user on the Redis of `redis_url` (named for this run, a fresh password), for
    PUBSUB_PREFIX `prefix`; yields each app's URL (by short name). The users go afterwards."""
    admin = Redis.from_url(redis_url)
    tag = TEST_NAMESPACE or "test"
    urls: dict[str, str] = {}
    created: list[str] = []
    try:
        for app in ACCESS:
            name, password = f"{tag}-{redis_username(app)}", secrets.token_urlsafe(16)
            # redis-py's acl_setuser spells each rule kind apart; these are the ACL's own words.
            admin.execute_command(  # type: ignore[no-untyped-call]
                "ACL", "SETUSER", name, "reset", "on", f">{password}", *acl_rules(app, prefix))
            created.append(name)
            urls[app] = as_user(redis_url, name, password)
        yield urls
    finally:
        for name in created:
            admin.acl_deluser(name)
        admin.close()
