"""Several replicas behind one name (shared/replicas.py, shared/http.py): two real uvicorn
processes on 127.0.0.1 and 127.0.0.2, same port, one name for both (SERVICE_HOSTS, as
an orchestrator's DNS would answer). Calls reach both; with one killed, idempotent calls go on
with no error the caller sees; a call that may have been carried out is sent once more, marked,
never a third time."""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from pydantic import ValidationError

from shared.http import RESENT_HEADER, ServiceCallFailed, ServiceClient, service_client
from shared.replicas import DNS_TTL_SECONDS, Replicas, Resolver
from shared.settings import ServiceSettings
from shared.testing.identity import signer
from shared.testing.net import ServiceProcess, free_port

NAME = "stock.replicas.test"
ADDRESSES = ("127.0.0.1", "127.0.0.2")
HOSTS = {NAME: list(ADDRESSES)}


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[dict[str, ServiceProcess]]:
    port = free_port()
    processes = {
        address: ServiceProcess(f"replica-{address}", "shared.testing.replica_app:create_app",
                                env={"REPLICA_NAME": address}, port=port, log_dir=tmp_path,
                                host=address).start()
        for address in ADDRESSES}
    try:
        for process in processes.values():
            process.wait_healthy()
        yield processes
    finally:
        for process in processes.values():
            process.stop()


def url_of(processes: dict[str, ServiceProcess]) -> str:
    return f"http://{NAME}:{next(iter(processes.values())).port}"


def client_of(processes: dict[str, ServiceProcess], *,
              timeout_seconds: float) -> AbstractAsyncContextManager[ServiceClient]:
    """order_service's client of the replicas' one name."""
    return service_client("stock_service", url_of(processes), signer=signer("order_service"),
                          timeout_seconds=timeout_seconds, hosts=HOSTS)


async def test_calls_one_after_another_reach_every_replica(
        replicas: dict[str, ServiceProcess]) -> None:
    async with client_of(replicas, timeout_seconds=5) as client:
        answers = [(await client.request("GET", "/x")).body for _ in range(20)]
    # One call at a time over keep-alive connections: each still goes to the next replica.
    assert Counter(a["replica"] for a in answers) == {"127.0.0.1": 10, "127.0.0.2": 10}
    assert {a["host"] for a in answers} == {url_of(replicas).removeprefix("http://")}


@pytest.mark.parametrize("method", ["GET", "PUT", "POST"])
async def test_a_killed_replica_costs_no_call(replicas: dict[str, ServiceProcess],
                                              method: str) -> None:
    async with client_of(replicas, timeout_seconds=5) as client:
        warm = [(await client.request(method, "/x", json_body={})).body for _ in range(4)]
        assert {a["replica"] for a in warm} == set(ADDRESSES)
        replicas["127.0.0.2"].kill()
        # Its pooled connections are gone and its port refuses: nothing was sent there, so
        # every call, whatever its method, moves to the replica that is left.
        answers = [(await client.request(method, "/x", json_body={})).body for _ in range(10)]
    assert [a["replica"] for a in answers] == ["127.0.0.1"] * 10
    assert not any(a["resent"] for a in answers)


async def test_a_replica_killed_under_calls_in_flight_costs_no_idempotent_call(
        replicas: dict[str, ServiceProcess]) -> None:
    async with client_of(replicas, timeout_seconds=10) as client:
        calls = [asyncio.ensure_future(client.request("PUT", "/x?sleep=1", json_body={}))
                 for _ in range(10)]
        await asyncio.sleep(0.5)
        replicas["127.0.0.2"].kill()
        answers = [answer.body for answer in await asyncio.gather(*calls)]
    # The five on the killed replica lost their connection after being sent: each was sent once
    # more, marked, and answered by the other.
    assert Counter((a["replica"], a["resent"]) for a in answers) == {
        ("127.0.0.1", False): 5, ("127.0.0.1", True): 5}


async def test_with_every_replica_gone_the_call_fails_as_one_error(
        replicas: dict[str, ServiceProcess]) -> None:
    for process in replicas.values():
        process.kill()
    async with client_of(replicas, timeout_seconds=5) as client:
        with pytest.raises(ServiceCallFailed, match="Connect"):
            await client.request("POST", "/x", json_body={})


async def test_a_call_that_may_have_been_carried_out_is_sent_once_more_never_twice() -> None:
    """Both replicas take the request and close the connection without an answer (a replica
    dying under it): the call is sent once more, marked, to the other replica, and then
    fails. A third send could carry it out a third time."""
    seen: list[tuple[str, bool]] = []

    def closes_every_request(address: str) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                                       Awaitable[None]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = (await reader.readuntil(b"\r\n\r\n")).decode().lower()
            seen.append((address, RESENT_HEADER.lower() in head))
            writer.close()
        return handle

    port = free_port()
    servers = [await asyncio.start_server(closes_every_request(a), a, port) for a in ADDRESSES]
    try:
        async with service_client("stock_service", f"http://{NAME}:{port}",
                                  signer=signer("order_service"), timeout_seconds=5,
                                  hosts=HOSTS) as client:
            with pytest.raises(ServiceCallFailed, match="ServerDisconnected"):
                await client.request("POST", "/x", json_body={"a": 1})
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()
    assert len(seen) == 2
    assert [resent for _, resent in seen] == [False, True]
    assert seen[0][0] != seen[1][0]


class _Table(AbstractResolver):
    """A name whose addresses the test changes, as an orchestrator's DNS changes them."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        self.asked = 0

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        self.asked += 1
        if not self.addresses:
            raise socket.gaierror(socket.EAI_NONAME, "no such name")
        return [ResolveResult(hostname=host, host=a, port=port, family=socket.AF_INET, proto=0,
                              flags=0) for a in self.addresses]

    async def close(self) -> None:
        pass


async def test_the_name_is_asked_again_so_replicas_join_and_leave() -> None:
    now = [0.0]
    table = _Table(["10.0.0.1", "10.0.0.2"])
    replicas = Replicas("svc", 80, table, clock=lambda: now[0])
    firsts = [(await replicas.turn())[0] for _ in range(4)]
    assert firsts == ["10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.2"]
    assert table.asked == 1
    table.addresses = ["10.0.0.2", "10.0.0.3"]
    now[0] = DNS_TTL_SECONDS - 0.1
    assert "10.0.0.3" not in await replicas.turn()
    now[0] = DNS_TTL_SECONDS + 0.1
    # The call that finds the answer old asks again in the background and goes on with the
    # addresses known; the calls after the answer came use the new ones.
    assert "10.0.0.3" not in await replicas.turn()
    await asyncio.sleep(0.01)
    assert set(await replicas.turn()) == {"10.0.0.2", "10.0.0.3"}
    assert table.asked == 2
    # A lookup that fails keeps the addresses known: a resolver that is down must not take a
    # running system with it.
    table.addresses = []
    now[0] = 3 * DNS_TTL_SECONDS
    assert set(await replicas.turn()) == {"10.0.0.2", "10.0.0.3"}
    await asyncio.sleep(0.01)
    assert set(await replicas.turn()) == {"10.0.0.2", "10.0.0.3"}


async def test_a_slow_resolver_never_holds_a_call_once_addresses_are_known() -> None:
    now = [0.0]
    table = _Table(["10.0.0.1"])
    replicas = Replicas("svc", 80, table, clock=lambda: now[0])
    assert await replicas.turn() == ["10.0.0.1"]
    hung = asyncio.Event()

    async def hanging(host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        await hung.wait()
        return []

    table.resolve = hanging  # type: ignore[method-assign]
    now[0] = DNS_TTL_SECONDS + 0.1
    # Every call goes on at once with what is known while the lookup hangs.
    turns = await asyncio.wait_for(asyncio.gather(*(replicas.turn() for _ in range(5))), 0.5)
    assert turns == [["10.0.0.1"]] * 5
    hung.set()


async def test_concurrent_calls_share_one_lookup_and_a_failed_address_goes_last() -> None:
    now = [0.0]
    table = _Table(["10.0.0.1", "10.0.0.2", "10.0.0.3"])
    replicas = Replicas("svc", 80, table, clock=lambda: now[0])
    await asyncio.gather(*(replicas.turn() for _ in range(20)))
    assert table.asked == 1
    replicas.failed("10.0.0.1")
    turns = [await replicas.turn() for _ in range(3)]
    assert all(turn[-1] == "10.0.0.1" for turn in turns)
    now[0] = DNS_TTL_SECONDS + 0.1  # forgiven once the name was asked again
    assert "10.0.0.1" in [(await replicas.turn())[0] for _ in range(3)]


async def test_the_likeliest_address_is_the_one_answered_most_lately() -> None:
    now = [0.0]
    table = _Table(["10.0.0.1", "10.0.0.2", "10.0.0.3"])
    replicas = Replicas("svc", 80, table, clock=lambda: now[0])
    turn = await replicas.turn()
    assert replicas.likeliest(turn) == turn[0]  # none answered yet: the first in turn
    replicas.answered("10.0.0.3")
    now[0] = 1.0
    replicas.answered("10.0.0.2")
    assert replicas.likeliest(["10.0.0.1", "10.0.0.3", "10.0.0.2"]) == "10.0.0.2"
    assert replicas.likeliest(["10.0.0.1", "10.0.0.3"]) == "10.0.0.3"
    # An address the name no longer stands for is forgotten with its answers.
    table.addresses = ["10.0.0.1", "10.0.0.3"]
    now[0] = DNS_TTL_SECONDS + 1.0
    await replicas.turn()
    await asyncio.sleep(0.01)
    assert replicas.likeliest(["10.0.0.2", "10.0.0.3"]) == "10.0.0.3"


async def test_a_name_that_answers_no_address_is_a_failed_lookup() -> None:
    # A caller maps OSError to "unavailable" (503), not to an error of its own.
    class Empty(_Table):
        async def resolve(self, host: str, port: int = 0,
                          family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
            return []

    replicas = Replicas("svc", 80, Empty([]), clock=lambda: 0.0)
    with pytest.raises(OSError, match="no address for svc"):
        await replicas.turn()


async def test_service_hosts_answer_before_dns_and_other_names_go_to_dns() -> None:
    resolver = Resolver({NAME: ["127.0.0.2", "::1"]})
    assert [r["host"] for r in await resolver.resolve(NAME, 80)] == ["127.0.0.2", "::1"]
    assert [r["family"] for r in await resolver.resolve(NAME, 80)] == [socket.AF_INET,
                                                                        socket.AF_INET6]
    assert {r["host"] for r in await resolver.resolve("localhost", 80)} >= {"127.0.0.1"}
    await resolver.close()


def test_service_hosts_setting_takes_addresses_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_HOSTS", json.dumps(HOSTS))
    assert ServiceSettings().service_hosts == HOSTS
    monkeypatch.setenv("SERVICE_HOSTS", json.dumps({NAME: ["stock"]}))
    with pytest.raises(ValidationError, match="addresses, not names"):
        ServiceSettings()
