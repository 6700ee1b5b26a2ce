"""The card processor simulator by itself, over real HTTP: card rules, idempotency keys, voids
ahead of a charge, refunds, signed webhooks and the faults, including a lost answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from payment_service.payments.processor_api import (
    DEVELOPMENT_WEBHOOK_SECRET,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    webhook_signature_valid,
)
from payment_service.simulator.app import create_app
from payment_service.simulator.settings import SimulatorSettings
from shared.testing.net import ThreadedServer

OK, DECLINED, OTHER = "4242424242424242", "4000000000000002", "4111111111111111"


class Receiver:
    """A webhook endpoint that records what it is sent and answers `status`."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        self.app = FastAPI()

        @self.app.post("/hook")
        async def hook(request: Request) -> Response:
            self.received.append((dict(request.headers), await request.body()))
            return Response(status_code=self.status)


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, str]]:
    hook = Receiver()
    server = ThreadedServer(hook.app).start()
    yield hook, server.url + "/hook"
    server.stop()


@pytest.fixture(scope="module")
def simulator(receiver: tuple[Receiver, str]) -> Iterator[str]:
    settings = SimulatorSettings(environment="test", webhook_url=receiver[1], latency_ms=0,
                                 decline_rate=0.0, webhook_retry_seconds=0.05, seed=7)
    server = ThreadedServer(create_app(settings)).start()
    yield server.url
    server.stop()


@pytest.fixture
async def sim(simulator: str, receiver: tuple[Receiver, str]) -> AsyncIterator[httpx.AsyncClient]:
    receiver[0].received.clear()
    receiver[0].status = 200
    async with httpx.AsyncClient(base_url=simulator, timeout=10) as client:
        yield client
        await client.put("/_sim/faults", json={
            "latency_ms": 0, "timeout_rate": 0, "lost_answer_rate": 0, "pending_rate": 0,
            "decline_rate": 0, "webhook_duplicate_rate": 0, "webhook_reorder_rate": 0})


_keys = iter(range(10**9))


def new_key() -> str:
    return f"test-{time.time_ns()}-{next(_keys)}"


async def charge(sim: httpx.AsyncClient, key: str, card: str = OK, amount: int = 1000,
                 reference: str = "payment:1:order:1") -> httpx.Response:
    return await sim.post("/v1/charges", headers={"Idempotency-Key": key},
                          json={"amount": amount, "card_number": card, "reference": reference})


async def ledger(sim: httpx.AsyncClient, key: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await sim.get("/_sim/charges")).json()["items"]
    return [item for item in items if item["idempotency_key"] == key]


async def test_the_contract_test_cards(sim: httpx.AsyncClient) -> None:
    assert (await charge(sim, new_key(), OK)).json()["status"] == "succeeded"
    declined = (await charge(sim, new_key(), DECLINED)).json()
    assert (declined["status"], declined["failure_code"]) == ("declined", "card_declined")
    await sim.put("/_sim/faults", json={"decline_rate": 1})
    other = (await charge(sim, new_key(), OTHER)).json()
    assert (other["status"], other["failure_code"]) == ("declined", "processor_declined")
    assert (await charge(sim, new_key(), OK)).json()["status"] == "succeeded"


async def test_a_key_charges_once_and_answers_the_same_charge_again(
    sim: httpx.AsyncClient
) -> None:
    key = new_key()
    first = await charge(sim, key)
    again = await charge(sim, key)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert len(await ledger(sim, key)) == 1
    reused = await charge(sim, key, amount=999)
    assert (reused.status_code, reused.json()["code"]) == (422, "idempotency_key_reused")
    assert (await sim.post("/v1/charges", json={"amount": 1, "card_number": OK,
                                                "reference": "r"})).status_code == 422


async def test_a_void_ahead_refuses_the_charge_still_on_its_way(sim: httpx.AsyncClient) -> None:
    key = new_key()
    voided = await sim.post(f"/v1/charges/{key}/void")
    assert voided.json()["status"] == "voided"
    late = (await charge(sim, key)).json()
    assert (late["status"], late["amount"]) == ("voided", 0)
    taken = new_key()
    await charge(sim, taken)
    assert (await sim.post(f"/v1/charges/{taken}/void")).json()["status"] == "voided"
    assert [item["status"] for item in await ledger(sim, taken)] == ["voided"]


async def test_refunds_give_a_settled_charge_back_once(sim: httpx.AsyncClient) -> None:
    key = new_key()
    await charge(sim, key)
    assert (await sim.post(f"/v1/charges/{key}/refund")).json()["status"] == "refunded"
    assert (await sim.post(f"/v1/charges/{key}/refund")).json()["status"] == "refunded"
    assert (await sim.post(f"/v1/charges/{new_key()}/refund")).status_code == 404
    await sim.put("/_sim/faults", json={"pending_rate": 1, "pending_ms": 60_000})
    pending = new_key()
    assert (await charge(sim, pending)).json()["status"] == "pending"
    refused = await sim.post(f"/v1/charges/{pending}/refund")
    assert (refused.status_code, refused.json()["code"]) == (409, "charge_pending")


async def test_a_pending_charge_is_decided_by_a_signed_webhook(
    sim: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    await sim.put("/_sim/faults", json={"pending_rate": 1, "pending_ms": 100})
    key = new_key()
    assert (await charge(sim, key)).json()["status"] == "pending"
    await asyncio.sleep(1.0)
    assert (await sim.get(f"/v1/charges/{key}")).json()["status"] == "succeeded"
    events = [(headers, body) for headers, body in receiver[0].received if key.encode() in body]
    assert len(events) == 1
    headers, body = events[0]
    assert webhook_signature_valid(DEVELOPMENT_WEBHOOK_SECRET.encode(),
                                   timestamp=headers[TIMESTAMP_HEADER.lower()],
                                   signature=headers[SIGNATURE_HEADER.lower()], body=body,
                                   now=time.time(), tolerance_seconds=60)
    assert not webhook_signature_valid(b"another secret", timestamp=headers[
        TIMESTAMP_HEADER.lower()], signature=headers[SIGNATURE_HEADER.lower()], body=body,
        now=time.time(), tolerance_seconds=60)


async def test_webhooks_are_retried_until_acknowledged_and_duplicated_when_asked(
    sim: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    receiver[0].status = 503
    key = new_key()
    await charge(sim, key)
    await asyncio.sleep(0.5)
    refused = sum(key.encode() in body for _, body in receiver[0].received)
    assert refused >= 2
    receiver[0].status = 200
    await asyncio.sleep(1.0)
    settled = sum(key.encode() in body for _, body in receiver[0].received)
    await asyncio.sleep(0.5)
    assert sum(key.encode() in body for _, body in receiver[0].received) == settled
    await sim.put("/_sim/faults", json={"webhook_duplicate_rate": 1})
    twice = new_key()
    await charge(sim, twice)
    await asyncio.sleep(0.5)
    assert sum(twice.encode() in body for _, body in receiver[0].received) == 2


async def test_a_lost_answer_leaves_the_charge_taken(sim: httpx.AsyncClient) -> None:
    await sim.put("/_sim/faults", json={"lost_answer_rate": 1})
    key = new_key()
    with pytest.raises(httpx.HTTPError):
        await charge(sim, key)
    assert [item["status"] for item in await ledger(sim, key)] == ["succeeded"]


async def test_faults_change_at_runtime_and_bad_ones_are_refused(sim: httpx.AsyncClient) -> None:
    changed = await sim.put("/_sim/faults", json={"latency_ms": 5, "timeout_rate": 0.5})
    assert changed.status_code == 200
    assert (changed.json()["latency_ms"], changed.json()["timeout_rate"]) == (5, 0.5)
    assert changed.json()["lost_answer_rate"] == 0
    assert (await sim.put("/_sim/faults", json={"timeout_rate": 2})).status_code == 422
    assert (await sim.put("/_sim/faults", json={"nonsense": 1})).status_code == 422
    item = (await sim.get("/_sim/charges")).json()["items"][0]
    assert {"id", "idempotency_key", "reference", "amount", "status", "created_at",
            "updated_at"} <= set(item)
