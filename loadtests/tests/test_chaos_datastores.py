"""The chaos run's own Redis and MariaDB: private ports and directories, and what a kill -9
keeps (every acknowledged write), so that a fault the run injects is a crash and not a loss it
made up."""

from __future__ import annotations

import subprocess
from pathlib import Path

from redis import Redis

from loadtests.chaos.datastores import PrivateMariaDB, PrivateRedis


def test_redis_keeps_every_acknowledged_write_across_a_kill(tmp_path: Path) -> None:
    redis = PrivateRedis("redis", tmp_path / "redis")
    try:
        redis.start()
        assert redis.port not in (6379,)
        client = Redis.from_url(redis.url)
        client.set("written", "before the kill")
        client.close()
        redis.kill()
        redis.start()
        client = Redis.from_url(redis.url)
        assert client.get("written") == b"before the kill"
        client.close()
        redis.kill()
        redis.forget_everything()
        redis.start()
        client = Redis.from_url(redis.url)
        assert client.get("written") is None
        client.close()
    finally:
        redis.stop()
    assert redis.starts == 3


def mariadb(server: PrivateMariaDB, sql: str) -> str:
    return subprocess.run(["mariadb", "--no-defaults", "-h127.0.0.1", f"-P{server.port}",
                           "-uroot", "-N", "-e", sql], capture_output=True, text=True,
                          check=True, timeout=30).stdout.strip()


def test_mariadb_keeps_a_committed_row_across_a_kill(tmp_path: Path) -> None:
    server = PrivateMariaDB("mariadb", tmp_path / "mariadb")
    try:
        server.install()
        server.start()
        assert server.port != 3306
        mariadb(server, "CREATE DATABASE t; CREATE TABLE t.r (n INT) ENGINE=InnoDB; "
                        "INSERT INTO t.r VALUES (7)")
        server.kill()
        server.start()
        assert mariadb(server, "SELECT n FROM t.r") == "7"
    finally:
        server.stop()
    server.forget_data()
    assert not server.datadir.exists()
