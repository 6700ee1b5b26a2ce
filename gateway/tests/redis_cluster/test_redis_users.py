"""On the cluster too, each app of the system is its own Redis user (made on every node: a
cluster's nodes do not share their ACL), and one app's user cannot reach another's keys on any
node."""

from __future__ import annotations

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoPermissionError

from gateway.tests.e2e import System
from shared.redis_acl import redis_username

# Keys of other apps, spread over the cluster's slots (and so over its three nodes).
FOREIGN_KEYS = [f"product:{{{n}}}:detail" for n in range(12)]


def test_every_app_of_the_system_reaches_the_cluster_as_its_own_user(system: System) -> None:
    urls = {"gateway": system.gateway.env["GATEWAY_REDIS_URL"],
            **{name: process.env[f"{name.upper()}_REDIS_URL"]
               for name, process in system.services.items()}}
    for app, url in urls.items():
        assert f"{redis_username(app)}:" in url, (app, url)


async def test_an_apps_user_is_refused_another_apps_keys_on_every_node(system: System) -> None:
    order = RedisCluster.from_url(system.services["order"].env["ORDER_REDIS_URL"],
                                  decode_responses=True)
    try:
        await order.initialize()
        assert len({order.keyslot(key) for key in FOREIGN_KEYS}) > 1
        nodes = set()
        for key in FOREIGN_KEYS:
            node = order.get_node_from_key(key)
            assert node is not None
            nodes.add(node.name)
            try:
                await order.get(key)
            except NoPermissionError:
                continue
            raise AssertionError(f"order_service's user read {key}")
        assert len(nodes) == 3
        # Its own keys, on whichever node holds them: yes.
        await order.set("idem:orders:1:cluster-acl", "1", ex=5)
        assert await order.get("idem:orders:1:cluster-acl") == "1"
    finally:
        await order.aclose()
