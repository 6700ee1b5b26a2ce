"""Issue 16, defect 2: a retry with the same Idempotency-Key after the first answer was lost
from Redis (a crash, a failover, FLUSHDB) returns what the first request did: never a refusal
the first one caused, never a second lease or charge. Orders and payments share the path
(shared.idempotency), so both are tested here against the real processes."""

from __future__ import annotations

import os

import httpx
from redis.asyncio import Redis

from shared.testing.sale import Sale, register_product
from shared.testing.sale_flow import order, pay


def user() -> int:
    return int.from_bytes(os.urandom(4), "big") + 1


async def forget_stored_answers(redis: Redis, namespace: str, user_id: int) -> None:
    """What a Redis failover or FLUSHDB does to the keys kept there."""
    found = [key async for key in redis.scan_iter(f"idem:{namespace}:{user_id}:*")]
    assert found, "the first request stored its answer"
    await redis.delete(*found)


async def test_an_order_retried_after_its_answer_was_lost_is_the_same_order(
    http: httpx.AsyncClient, sale: Sale, redis: Redis
) -> None:
    buyer = user()
    product = await register_product(http, sale, total=5, limit_per_user=1)
    first = await order(http, sale, user=buyer, product=product, key="order-once")
    assert first.status_code == 201, first.text
    await forget_stored_answers(redis, "orders", buyer)
    again = await order(http, sale, user=buyer, product=product, key="order-once")
    assert (again.status_code, again.json()) == (201, first.json())
    # And kept again: the next retry is answered from Redis.
    assert (await order(http, sale, user=buyer, product=product, key="order-once")).json() == (
        first.json())
    reused = await order(http, sale, user=buyer, product=product, quantity=2, key="order-once")
    assert (reused.status_code, reused.json()["code"]) == (422, "idempotency_key_reused")


async def test_a_payment_retried_after_its_answer_was_lost_is_the_same_payment(
    http: httpx.AsyncClient, sale: Sale, redis: Redis
) -> None:
    buyer = user()
    product = await register_product(http, sale, total=5)
    order_id = (await order(http, sale, user=buyer, product=product)).json()["id"]
    first = await pay(http, sale, user=buyer, order_id=order_id, key="pay-once")
    assert (first.status_code, first.json()["status"]) == (201, "succeeded"), first.text
    await forget_stored_answers(redis, "payments-hmac", buyer)
    again = await pay(http, sale, user=buyer, order_id=order_id, key="pay-once")
    assert (again.status_code, again.json()) == (201, first.json())
    await forget_stored_answers(redis, "payments-hmac", buyer)
    reused = await pay(http, sale, user=buyer, order_id=order_id, key="pay-once",
                       card="4000000000000002")
    assert (reused.status_code, reused.json()["code"]) == (422, "idempotency_key_reused")
