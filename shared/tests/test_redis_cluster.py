"""open_redis builds a cluster client when asked, and same_slot_groups splits a script's keys so
that a Redis Cluster (which refuses a script across hash slots) takes every group."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic_settings import SettingsConfigDict
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, ResponseError

from shared.lifespan import open_redis, same_slot_groups
from shared.settings import DatastoreSettings
from shared.testing.datastores import TEST_REDIS_URL
from shared.testing.redis_cluster import redis_cluster

# Counts each key it is given.
COUNT_EACH = "for _, key in ipairs(KEYS) do redis.call('INCR', key) end return #KEYS"
KEYS = [f"cluster-test:{n}" for n in range(20)]


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    with redis_cluster() as url:
        yield url


@pytest.fixture
async def cluster(cluster_url: str) -> AsyncIterator[RedisCluster]:
    client = open_redis(cluster_url, cluster=True)
    assert isinstance(client, RedisCluster)
    yield client
    await client.aclose()


async def test_a_script_across_slots_is_refused_and_its_groups_are_not(
        cluster: RedisCluster) -> None:
    script = cluster.register_script(COUNT_EACH)
    with pytest.raises((RedisClusterException, ResponseError)):
        await script(keys=KEYS)
    groups = same_slot_groups(cluster, KEYS)
    assert sorted(k for group in groups for k in group) == sorted(KEYS)
    assert all(len({cluster.keyslot(k) for k in group}) == 1 for group in groups)
    assert sum([await script(keys=group) for group in groups]) == len(KEYS)
    assert await cluster.mget_nonatomic(KEYS) == ["1"] * len(KEYS)


async def test_a_single_redis_takes_all_keys_in_one_group() -> None:
    client = open_redis(TEST_REDIS_URL, cluster=False)
    try:
        assert same_slot_groups(client, KEYS) == [KEYS]
        assert same_slot_groups(client, []) == []
    finally:
        await client.aclose()


class ExampleSettings(DatastoreSettings):
    model_config = SettingsConfigDict(env_prefix="EXAMPLE_")


def test_the_setting_is_read_with_the_services_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMPLE_DATABASE_URL", "mysql+asyncmy://root@127.0.0.1/x")
    assert ExampleSettings().redis_cluster is False
    monkeypatch.setenv("EXAMPLE_REDIS_CLUSTER", "true")
    assert ExampleSettings().redis_cluster is True
