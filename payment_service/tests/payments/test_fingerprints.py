"""Issue 16, defect 3: the Idempotency-Key fingerprint of a payment must not give the card number
back. A plain SHA-256 of {card_number, order_id} stored beside card_last4 and order_id left about
10^5 Luhn-valid candidates for a guessed BIN: milliseconds of work. It is an HMAC with a key only
payment_service holds, and the migration drops the values written before."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os

import httpx
from alembic import command
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.idempotency import fingerprint
from shared.migrate import alembic_config, upgrade
from shared.testing.datastores import database_url_for_tests
from shared.testing.sale import Sale, register_product
from shared.testing.sale_flow import CARD_OK, order, pay


def user() -> int:
    return int.from_bytes(os.urandom(4), "big") + 1


def plain_sha256(order_id: int, card: str) -> str:
    """What anyone holding a row could compute for each candidate card."""
    return hashlib.sha256(json.dumps({"card_number": card, "order_id": order_id},
                                     sort_keys=True, separators=(",", ":")).encode()).hexdigest()


async def test_the_stored_fingerprint_cannot_be_recomputed_from_a_card_number(
    http: httpx.AsyncClient, sale: Sale, engines: dict[str, AsyncEngine], redis: Redis
) -> None:
    buyer = user()
    product = await register_product(http, sale, total=2)
    order_id = (await order(http, sale, user=buyer, product=product)).json()["id"]
    paid = await pay(http, sale, user=buyer, order_id=order_id, key="fp-1")
    assert paid.status_code == 201, paid.text
    assert plain_sha256(order_id, CARD_OK) == fingerprint(
        {"order_id": order_id, "card_number": CARD_OK})
    async with engines["payment"].connect() as conn:
        stored = (await conn.execute(text(
            "SELECT idempotency_fingerprint FROM payments WHERE order_id = :o"),
            {"o": order_id})).scalar_one()
    kept_in_redis = [await redis.hget(key, "fp")
                     async for key in redis.scan_iter(f"idem:payments*:{buyer}:*")]
    assert stored
    assert kept_in_redis
    assert stored != plain_sha256(order_id, CARD_OK)
    assert all(fp not in (plain_sha256(order_id, CARD_OK).encode(),
                          plain_sha256(order_id, CARD_OK)) for fp in kept_in_redis)
    # Still a fingerprint: the same body replays, another card is refused.
    assert (await pay(http, sale, user=buyer, order_id=order_id, key="fp-1")).json() == (
        paid.json())
    assert (await pay(http, sale, user=buyer, order_id=order_id, key="fp-1",
                      card="4000000000000002")).status_code == 422


def test_the_migration_drops_fingerprints_written_before() -> None:
    url = database_url_for_tests("preorder_payment", "fp_migration")
    upgrade("payment_service", url, drop_first=True)
    command.downgrade(alembic_config("payment_service", url), "0003")

    async def write_then_read(values: dict[str, object] | None) -> object:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                if values:
                    await conn.execute(text(
                        "INSERT INTO payments (id, order_id, user_id, amount, status, card_last4, "
                        "lease_token, idempotency_key, idempotency_fingerprint, created_at, "
                        "updated_at) VALUES (1, 2, 3, 100, 'succeeded', '4242', :token, 'k', "
                        ":fingerprint, NOW(), NOW())"), values)
                return (await conn.execute(text(
                    "SELECT idempotency_fingerprint FROM payments WHERE id = 1"))).scalar_one()
        finally:
            await engine.dispose()

    before = asyncio.run(write_then_read(
        {"token": "a" * 32, "fingerprint": plain_sha256(2, CARD_OK)}))
    assert before == plain_sha256(2, CARD_OK)
    command.upgrade(alembic_config("payment_service", url), "head")
    assert asyncio.run(write_then_read(None)) is None
