"""The scripts run unchanged on a three-node Redis Cluster that this module starts on loopback:
every key of a product shares its hash tag and is passed in KEYS, so each script runs on the one
node that owns the product's slot."""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, ResponseError

from stock_service.stock.scripts import ProductKeys, StockScripts
from stock_service.tests.stock.test_scripts import CHECKS

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None
                                or shutil.which("redis-cli") is None,
                                reason="redis-server and redis-cli are needed to start a cluster")


@pytest.fixture(scope="module")
def cluster_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    workdir = tmp_path_factory.mktemp("redis-cluster")
    ports = cluster_ports(3)
    nodes: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            node_dir = workdir / str(port)
            node_dir.mkdir()
            nodes.append(subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                 "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                 "--dir", str(node_dir), "--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _wait_for(lambda: all(_ping(port) for port in ports), "cluster nodes to start")
        subprocess.run(["redis-cli", "--cluster", "create",
                        *(f"127.0.0.1:{port}" for port in ports),
                        "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=30)
        _wait_for(lambda: "cluster_state:ok" in _cluster_info(ports[0]), "cluster_state:ok")
        yield ports[0]
    finally:
        for node in nodes:
            node.terminate()
        for node in nodes:
            node.wait(timeout=10)


def cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster bus port (port + 10000) is free too, so below 55536."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randint(20_000, 40_000)
        if port not in ports and _free(port) and _free(port + 10_000):
            ports.append(port)
    return ports


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ping(port: int) -> bool:
    done = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True,
                          check=False)
    return done.stdout.strip() == "PONG"


def _cluster_info(port: int) -> str:
    return subprocess.run(["redis-cli", "-p", str(port), "cluster", "info"], capture_output=True,
                          text=True, check=False).stdout


def _wait_for(condition: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
async def cluster_scripts(cluster_port: int) -> AsyncIterator[StockScripts]:
    client = RedisCluster(host="127.0.0.1", port=cluster_port, decode_responses=True,
                          max_connections=512)
    await client.initialize()
    yield StockScripts(client)
    await client.aclose()


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
async def test_scripts_on_a_three_node_cluster(cluster_scripts: StockScripts, check: Any) -> None:
    await check(cluster_scripts)


async def test_products_spread_over_the_nodes(cluster_scripts: StockScripts) -> None:
    client = cluster_scripts.redis
    assert isinstance(client, RedisCluster)
    nodes = {getattr(client.get_node_from_key(ProductKeys.of(product_id).meta), "name", None)
             for product_id in range(1, 50)}
    assert len(nodes) == 3


async def test_a_key_left_out_of_keys_fails_here(cluster_scripts: StockScripts) -> None:
    client = cluster_scripts.redis
    assert isinstance(client, RedisCluster)
    one, other = ProductKeys.of(1), ProductKeys.of(2)
    assert client.keyslot(one.meta) != client.keyslot(other.meta)
    # Two products' keys in one call: refused before it runs.
    with pytest.raises((ResponseError, RedisClusterException), match=r"(?i)crossslot|slot"):
        await client.eval("return redis.call('EXISTS', KEYS[1], KEYS[2])", 2, one.meta,
                          other.meta)
    # A key the script builds itself instead of receiving it: refused on the node.
    undeclared = "return redis.call('GET', ARGV[1])"
    with pytest.raises(ResponseError):
        await client.eval(undeclared, 1, one.meta, other.meta)


async def test_the_cluster_serves_concurrent_reserves_exactly(
    cluster_scripts: StockScripts,
) -> None:
    from stock_service.tests.stock.test_scripts import counts, seed

    product = await seed(cluster_scripts, total=30)
    results = await asyncio.gather(*(cluster_scripts.reserve(product, 10_000 + n, n, 1)
                                     for n in range(300)))
    words = [result.word for result in results]
    assert words.count("held") == 30
    assert words.count("sold_out") == 270
    assert await counts(cluster_scripts.redis, product) == {"remaining": 0, "held": 30,
                                                            "sold": 0}



