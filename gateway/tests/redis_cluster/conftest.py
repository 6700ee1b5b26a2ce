"""The whole system on a 3-node Redis Cluster of its own (shared.testing.redis_cluster): every
app built with X_REDIS_CLUSTER=true, so each of its commands and scripts must keep its keys in
one hash slot, and each reaching the cluster as its own ACL user (made on every node), as
deployed. The modules here run the end-to-end tests of the sale, the auth flow and the feed
against it, unchanged: their `system` and `redis` are these."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio.cluster import RedisCluster

from gateway.tests.e2e import System, running_system
from shared.services import SERVICES
from shared.testing.mail import MailSink
from shared.testing.redis_cluster import redis_cluster


@pytest.fixture(scope="package")
def cluster_url() -> Iterator[str]:
    with redis_cluster() as url:
        yield url


@pytest.fixture(scope="package")
def system(mail_sink: MailSink, cluster_url: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    on_cluster = {app.name: {f"{app.env_prefix}_REDIS_CLUSTER": "true"} for app in SERVICES}
    on_cluster["gateway"] = {"GATEWAY_REDIS_CLUSTER": "true"}
    with running_system(mail_sink, cluster_url, tmp_path_factory.mktemp("cluster-logs"),
                        overrides=on_cluster) as running:
        yield running


@pytest.fixture
async def redis(cluster_url: str) -> AsyncIterator[RedisCluster]:
    """The cluster, for the tests (and the gateway's autouse fixture) that reach into Redis."""
    client = RedisCluster.from_url(cluster_url, decode_responses=True)
    yield client
    await client.aclose()
