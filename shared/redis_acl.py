"""Least privilege in Redis: what each app's own Redis user may touch (its key patterns and
pub/sub channels) and run. docker-compose.yml and the Kubernetes dev overlay create these users
(deploy/redis_acl.py renders them); the end-to-end tests run every app as its own user, so a key
or command an app needs and its user lacks fails them (NOPERM).

The key patterns follow the keys each app writes (its own prefix) and the few it only reads:
the gateway reads the revocations user_service writes and the sold-out answers stock_service
publishes, and writes only its rate-limit counters. Commands are the data categories (read,
write, scripting, transactions) without the dangerous ones (KEYS, FLUSHDB, CONFIG, DEBUG, ...);
pub/sub only for the two apps that use channels. Patterns marked `<prefix>` take the
deployment's PUBSUB_PREFIX.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RedisAccess:
    # ACL key selectors: `~pattern` read and write, `%R~pattern` read only.
    keys: tuple[str, ...]
    # Pub/sub channel patterns (none: no pub/sub at all).
    channels: tuple[str, ...] = ()
    # Rules after the common ones (COMMANDS).
    commands: tuple[str, ...] = ()


# By app short name (shared.services).
ACCESS: dict[str, RedisAccess] = {
    # Revocations and the revocation epoch (read), sold-out answers (read), rate limits (its own);
    # it hears the edge answers and finals services publish, and publishes nothing.
    "gateway": RedisAccess(keys=("%R~{auth:revocation}:*", "%R~<prefix>edge:*",
                                 "~<prefix>rate:*"),
                           channels=("<prefix>edge-answers", "<prefix>edge-finals"),
                           commands=("-publish",)),
    # Throttles, mail guard, resend memory; it writes the revocations the gateway reads.
    "user": RedisAccess(keys=("~auth:*", "~{auth:revocation}:*", "~mail:*")),
    "product": RedisAccess(keys=("~product:*",)),
    # Its idempotency keys, and the line of an opening (one hash tag per product) with the
    # channels its replicas share it on; stock_service's sold-out answers, heard (a sell-out
    # refuses the line's waiting places at once), and its levels (near the end of the stock one
    # process admits the line); the tickets' answers it publishes for the gateway (edge finals).
    "order": RedisAccess(keys=("~idem:orders:*", "~line:*"),
                         channels=("<prefix>line-tickets", "<prefix>line-open",
                                   "<prefix>edge-answers", "<prefix>edge-finals",
                                   "<prefix>stock-levels")),
    "payment": RedisAccess(keys=("~idem:payments-hmac:*",)),
    # Live stock (one hash tag per product), its epoch, the sold-out answers it publishes for the
    # gateway, and the stock levels its replicas share.
    "stock": RedisAccess(keys=("~{p:*", "~stock:*", "~<prefix>edge:*"),
                         channels=("<prefix>edge-answers", "<prefix>stock-levels")),
    "social": RedisAccess(keys=("~social:*",)),
}

# Data commands without the dangerous ones; TIME (the Lua scripts' clock), SELECT (a URL's
# database) and the cluster topology a Redis Cluster client asks for. (redis-py's CLIENT
# SETINFO on connect is refused and ignored: Redis 7.0, which `make run` may use, does not
# know it by name.)
COMMANDS = ("-@all", "+@read", "+@write", "+@scripting", "+@transaction", "+@connection",
            "-@dangerous", "+time", "+select", "+cluster|slots", "+cluster|shards",
            "+cluster|nodes", "+cluster|myid", "+readonly", "+asking")


def acl_rules(app: str, prefix: str) -> list[str]:
    """The ACL SETUSER rules of `app`'s user (without `on` and its password), for a deployment
    whose PUBSUB_PREFIX is `prefix`."""
    access = ACCESS[app]
    rules = ["resetkeys", "resetchannels",
             *(key.replace("<prefix>", prefix) for key in access.keys),
             *(f"&{channel.replace('<prefix>', prefix)}" for channel in access.channels),
             *COMMANDS]
    if access.channels:
        rules.append("+@pubsub")
    return [*rules, *access.commands]


def redis_username(app: str) -> str:
    return f"{app}_svc"


# A key of each app's own (with the default prefix), for checks that one app cannot reach
# another's (deploy/compose_check).
SAMPLE_KEYS: dict[str, str] = {
    "gateway": "preorder:rate:sample", "user": "auth:sample", "product": "product:{0}:sample",
    "order": "idem:orders:0:sample", "payment": "idem:payments-hmac:0:sample",
    "stock": "{p:0}:sample", "social": "social:sample",
}
