"""Final states a service published for the edge (shared/edge_finals.py): an answered ticket's
reads by its owner (the ticket and its stream) are given by the gateway without forwarding;
anyone else's, or with a query, are forwarded."""

from __future__ import annotations

import json
import uuid

import httpx
from redis.asyncio import Redis

from gateway.tests.conftest import Rig
from gateway.tests.test_edge_answers import forwarded, until
from shared.broadcast import Channels
from shared.edge_finals import FINALS_TOPIC

OWNER = "4242"


def ticket_path() -> str:
    return f"/api/v1/orders/tickets/1-{uuid.uuid4().hex[:16]}"


async def publish(redis: Redis, rig: Rig, path: str, body: dict[str, object], *,
                  ttl_ms: int = 5000) -> None:
    message = json.dumps({"ttl_ms": ttl_ms, "finals": [[path, OWNER, body]]})
    await redis.publish(Channels(rig.settings.pubsub_prefix).name(FINALS_TOPIC), message)


def as_user(rig: Rig, sub: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {rig.token(sub=sub)}"}


async def test_an_answered_tickets_reads_by_its_owner_are_given_at_the_edge(
        client: httpx.AsyncClient, rig: Rig, redis: Redis) -> None:
    path = ticket_path()
    body = {"ticket": path.rsplit("/", 1)[1], "product_id": 1, "position": 3,
            "state": "refused", "problem": {"code": "sold_out", "status": 409}}
    assert forwarded(await client.get(path, headers=as_user(rig, OWNER)))
    await publish(redis, rig, path, body)

    async def answered() -> bool:
        return not forwarded(await client.get(path, headers=as_user(rig, OWNER)))

    await until(answered)
    read = await client.get(path, headers=as_user(rig, OWNER))
    assert (read.status_code, read.json()) == (200, body)
    assert read.headers["content-type"] == "application/json"
    stream = await client.get(path + "/events", headers=as_user(rig, OWNER))
    assert stream.status_code == 200
    assert not forwarded(stream)
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.content == b"data: " + json.dumps(body, separators=(",", ":")).encode() + \
        b"\n\n"
    # Someone else's read, a read with a query (?wait=), no token: not the edge's to give.
    assert forwarded(await client.get(path, headers=as_user(rig, "77")))
    assert forwarded(await client.get(path + "/events", headers=as_user(rig, "77")))
    assert forwarded(await client.get(path + "?wait=5", headers=as_user(rig, OWNER)))
    assert (await client.get(path)).status_code == 401


async def test_a_final_state_is_forgotten_when_its_time_is_up(
        client: httpx.AsyncClient, rig: Rig, redis: Redis) -> None:
    path = ticket_path()
    await publish(redis, rig, path, {"state": "ordered"}, ttl_ms=300)

    async def answered() -> bool:
        return not forwarded(await client.get(path, headers=as_user(rig, OWNER)))

    await until(answered)

    async def forgotten() -> bool:
        return forwarded(await client.get(path, headers=as_user(rig, OWNER)))

    await until(forgotten)
