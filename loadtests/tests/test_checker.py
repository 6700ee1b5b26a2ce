"""The checker against real schemas: order_service's, stock_service's and payment_service's own
Alembic chains on MariaDB, rows written as the services would leave them after a sale, then one
breach at a time. Each breach must be named; the consistent sale must pass."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from loadtests import sale_run
from loadtests.checker import answers_by_status, check, read_state
from order_service.orders.scripts import LineKeys
from shared.clock import utcnow
from shared.testing.datastores import TEST_REDIS_URL, fresh_database

PRODUCT = 77
PRICE = 1000
TABLES = {"order": ("orders",), "stock": ("stock_holds", "stock_user_counts", "stock_products"),
          "payment": ("payments",)}


@pytest.fixture(scope="module")
def databases() -> dict[str, str]:
    return {name: fresh_database(f"{name}_service", f"preorder_{name}", "check")
            for name in ("order", "stock", "payment")}


@pytest.fixture
async def engines(databases: dict[str, str]) -> AsyncIterator[dict[str, AsyncEngine]]:
    made = {name: create_async_engine(url) for name, url in databases.items()}
    for name, engine in made.items():
        async with engine.begin() as conn:
            for table in TABLES[name]:
                await conn.execute(text(f"DELETE FROM {table}"))  # noqa: S608 (fixed names)
    yield made
    for engine in made.values():
        await engine.dispose()


@dataclass
class Sale:
    """Rows of one product's sale, as the services write them; `write` stores them all."""

    total: int = 5
    limit: int = 1
    orders: list[dict[str, object]] = field(default_factory=list)
    holds: list[dict[str, object]] = field(default_factory=list)
    payments: list[dict[str, object]] = field(default_factory=list)
    held: int = 0
    sold: int = 0
    units: dict[int, int] = field(default_factory=dict)

    def order(self, order_id: int, user_id: int, status: str, hold: str | None = None,
              payment: str | None = None, payment_id: int | None = None) -> None:
        now = utcnow()
        self.orders.append({"id": order_id, "user_id": user_id, "product_id": PRODUCT,
                            "quantity": 1, "unit_price": PRICE, "amount": PRICE,
                            "status": status, "expires_at": now + timedelta(minutes=10),
                            "created_at": now, "updated_at": now,
                            "payment_id": payment_id if status == "paid" else None})
        if hold is not None:
            self.holds.append({"order_id": order_id, "product_id": PRODUCT, "user_id": user_id,
                               "quantity": 1, "unit_price": PRICE, "state": hold,
                               "expires_at": now + timedelta(minutes=10), "created_at": now,
                               "updated_at": now})
            self.held += hold == "held"
            self.sold += hold == "committed"
            if hold in ("held", "committed"):
                self.units[user_id] = self.units.get(user_id, 0) + 1
        if payment is not None:
            self.payments.append({"id": payment_id, "order_id": order_id, "user_id": user_id,
                                  "amount": PRICE, "status": payment,
                                  "failure_code": "card_declined" if payment == "failed" else None,
                                  "card_last4": "4242", "lease_token": "0" * 32,
                                  "active_order_id": order_id if payment == "succeeded" else None,
                                  "created_at": now, "updated_at": now})

    async def write(self, engines: dict[str, AsyncEngine]) -> None:
        now = utcnow()
        async with engines["stock"].begin() as conn:
            await conn.execute(text(
                "INSERT INTO stock_products (product_id, seller_id, price, total, held, sold, "
                "limit_per_user, created_at, updated_at) VALUES (:p, 1, :price, :total, :held, "
                ":sold, :limit, :now, :now)"), {"p": PRODUCT, "price": PRICE, "total": self.total,
                                               "held": self.held, "sold": self.sold,
                                               "limit": self.limit, "now": now})
            await _insert(conn, "stock_holds", self.holds)
            await _insert(conn, "stock_user_counts", [
                {"product_id": PRODUCT, "user_id": user, "units": units}
                for user, units in self.units.items()])
        async with engines["order"].begin() as conn:
            await _insert(conn, "orders", self.orders)
        async with engines["payment"].begin() as conn:
            await _insert(conn, "payments", self.payments)


async def _insert(conn: object, table: str, rows: list[dict[str, object]]) -> None:
    if rows:
        columns = list(rows[0])
        statement = text(f"INSERT INTO {table} ({', '.join(columns)}) VALUES "  # noqa: S608
                         f"({', '.join(':' + c for c in columns)})")
        await conn.execute(statement, rows)  # type: ignore[attr-defined]


def after_a_sale() -> Sale:
    """One paid, one expired, one declined: what a small sale leaves, all consistent."""
    sale = Sale()
    sale.order(1, 11, "paid", hold="committed", payment="succeeded", payment_id=501)
    sale.order(2, 12, "expired", hold="released")
    sale.order(3, 13, "payment_failed", hold="released", payment="failed", payment_id=502)
    return sale


async def broken(sale: Sale, engines: dict[str, AsyncEngine], databases: dict[str, str], *,
                 public_remaining: int | None = None,
                 answers: dict[int, int] | None = None) -> list[str]:
    await sale.write(engines)
    state = await read_state(PRODUCT, databases)
    state.public_remaining = (sale.total - sale.held - sale.sold if public_remaining is None
                              else public_remaining)
    return sorted(check(state, answers=answers or {200: 10, 409: 3}).breaches)


async def test_a_consistent_sale_passes_every_invariant(engines: dict[str, AsyncEngine],
                                                        databases: dict[str, str]) -> None:
    sale = after_a_sale()
    await sale.write(engines)
    state = await read_state(PRODUCT, databases)
    state.public_remaining = 4
    verdict = check(state, answers={201: 3, 409: 10})
    assert verdict.ok, verdict.breaches
    assert len(verdict.checked) == 6
    assert verdict.facts["orders_by_status"] == {"paid": 1, "expired": 1, "payment_failed": 1}
    assert verdict.facts["ledger"]["sold"] == 1


async def test_more_paid_than_the_total_is_oversold(engines: dict[str, AsyncEngine],
                                                    databases: dict[str, str]) -> None:
    sale = after_a_sale()
    sale.total = 1
    sale.order(4, 14, "paid", payment="succeeded", payment_id=503)  # paid, no unit behind it
    assert "sold_within_total" in await broken(sale, engines, databases, public_remaining=0)


async def test_a_negative_public_stock_is_oversold(engines: dict[str, AsyncEngine],
                                                   databases: dict[str, str]) -> None:
    assert "sold_within_total" in await broken(after_a_sale(), engines, databases,
                                               public_remaining=-1)


async def test_a_hold_left_after_the_ttl_is_a_unit_not_returned(
        engines: dict[str, AsyncEngine], databases: dict[str, str]) -> None:
    sale = after_a_sale()
    sale.order(4, 14, "pending_payment", hold="held")
    assert await broken(sale, engines, databases) == ["stock_returned"]


async def test_redis_disagreeing_with_the_ledger_is_a_unit_not_returned(
        engines: dict[str, AsyncEngine], databases: dict[str, str]) -> None:
    assert await broken(after_a_sale(), engines, databases, public_remaining=3) == [
        "stock_returned"]


async def test_an_order_without_its_hold_breaks_the_agreement(
        engines: dict[str, AsyncEngine], databases: dict[str, str]) -> None:
    sale = after_a_sale()
    sale.order(4, 14, "expired")  # no hold was ever written for it
    assert await broken(sale, engines, databases) == ["orders_holds_payments_agree"]


def orphan_hold(sale: Sale, order_id: int, user_id: int, state: str) -> None:
    """A hold whose order was never written (its order_service died between the two)."""
    sale.order(order_id, user_id, "expired", hold=state)
    sale.orders.pop()


async def test_a_released_hold_whose_order_was_never_written_is_an_orphan_given_back(
        engines: dict[str, AsyncEngine], databases: dict[str, str]) -> None:
    sale = after_a_sale()
    orphan_hold(sale, 4, 14, "released")
    assert await broken(sale, engines, databases) == []


async def test_a_committed_hold_without_an_order_breaks_the_agreement(
        engines: dict[str, AsyncEngine], databases: dict[str, str]) -> None:
    sale = after_a_sale()
    orphan_hold(sale, 4, 14, "committed")
    assert "orders_holds_payments_agree" in await broken(sale, engines, databases,
                                                         public_remaining=3)


async def test_a_hold_in_the_wrong_state_breaks_the_agreement(
        engines: dict[str, AsyncEngine], databases: dict[str, str]) -> None:
    sale = after_a_sale()
    sale.holds[1]["state"] = "committed"  # order 2 expired, its unit counted as sold
    sale.sold += 1
    sale.units[12] = 1
    assert "orders_holds_payments_agree" in await broken(sale, engines, databases)


async def test_a_paid_order_without_a_succeeded_payment_breaks_the_agreement(
        engines: dict[str, AsyncEngine], databases: dict[str, str]) -> None:
    sale = after_a_sale()
    sale.order(4, 14, "paid", hold="committed", payment_id=504)  # its payment never written
    assert await broken(sale, engines, databases) == ["orders_holds_payments_agree"]


async def test_two_live_orders_over_a_limit_of_one(engines: dict[str, AsyncEngine],
                                                   databases: dict[str, str]) -> None:
    sale = after_a_sale()
    sale.order(4, 11, "paid", hold="committed", payment="succeeded", payment_id=503)
    assert await broken(sale, engines, databases) == ["within_limit_per_user"]


async def test_a_succeeded_payment_of_an_expired_order(engines: dict[str, AsyncEngine],
                                                       databases: dict[str, str]) -> None:
    sale = after_a_sale()
    sale.order(4, 14, "expired", hold="released", payment="succeeded", payment_id=503)
    assert "succeeded_payment_has_paid_order" in await broken(sale, engines, databases)


async def test_a_5xx_answer_in_the_run(engines: dict[str, AsyncEngine],
                                       databases: dict[str, str]) -> None:
    outcomes = {"counts": [["GET /feed", 200, "", 40], ["GET /feed", 503, "upstream_timeout", 2]],
                "records": [["POST /orders", 201, "", 0.0, 5.0], ["POST /orders", 500, "", 0.0, 1]]}
    answers = answers_by_status(outcomes)
    assert answers == {200: 40, 503: 2, 201: 1, 500: 1}
    assert await broken(after_a_sale(), engines, databases, answers=answers) == ["no_5xx"]


async def test_the_command_exits_non_zero_and_names_the_breach(
        engines: dict[str, AsyncEngine], databases: dict[str, str]) -> None:
    sale = after_a_sale()
    sale.order(4, 14, "pending_payment", hold="held")
    await sale.write(engines)
    urls = [f"--{name}-database-url={url}" for name, url in databases.items()]
    checker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadtests.checker", "--product-id", str(PRODUCT), *urls,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(checker.communicate(), 60)
    assert checker.returncode == 1, err.decode()
    assert "BROKEN stock_returned" in out.decode()
    assert "order 4 still pending_payment" in out.decode()


async def test_places_decided_more_than_once_are_read_from_the_lines_records(
        engines: dict[str, AsyncEngine], databases: dict[str, str]) -> None:
    """decided_again: the tickets whose record counts more than one decision (`n`), and each
    ticket's arrival stamp (`a`), read from order_service's Redis as the line keeps them
    (order_service/orders/scripts.py)."""
    await after_a_sale().write(engines)
    redis = Redis.from_url(TEST_REDIS_URL)
    key = LineKeys.of(PRODUCT).tickets
    try:
        await redis.delete(key)
        await redis.hset(key, mapping={
            "77-once": json.dumps({"u": "11", "n": "1", "s": "ordered", "a": "1700000000000001"}),
            "77-twice": json.dumps({"u": "12", "n": "2", "s": "ordered", "a": "1700000000000002"}),
            "77-waiting": json.dumps({"u": "13", "n": "0", "s": "waiting"})})
        state = await read_state(PRODUCT, databases, line_redis_url=TEST_REDIS_URL)
        assert state.decided_again == frozenset({"77-twice"})
        # With their arrival stamps, for the report's stamp order (a record without one left out).
        assert state.stamps == {"77-once": 1700000000000001, "77-twice": 1700000000000002}
        assert (await read_state(PRODUCT, databases)).decided_again == frozenset()
    finally:
        await redis.delete(key)
        await redis.aclose()


async def test_the_run_waits_for_an_orphan_holds_sweep_before_it_checks(
        engines: dict[str, AsyncEngine], databases: dict[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A hold whose order was never written (its decision cut off after the reserve) comes back
    by order_service's orphan sweep once it is old enough. The run waits for that sweep when the
    newest hold may be such an orphan: seen at 20,000 buyers, where decisions ran past the TTL and
    the checker reported such units as never returned."""
    monkeypatch.setattr(sale_run, "SETTLE_SECONDS", 1.0)
    monkeypatch.setattr(sale_run, "ORPHAN_SWEPT_SECONDS", 8.0)
    sale = after_a_sale()
    now = utcnow()
    sale.holds.append({"order_id": 99, "product_id": PRODUCT, "user_id": 19, "quantity": 1,
                       "unit_price": PRICE, "state": "held", "expires_at": now,
                       "created_at": now, "updated_at": now})
    sale.held += 1
    sale.units[19] = 1
    await sale.write(engines)

    async def swept_after(seconds: float) -> None:
        await asyncio.sleep(seconds)
        async with engines["stock"].begin() as conn:
            await conn.execute(text("UPDATE stock_holds SET state = 'released' "
                                    "WHERE order_id = 99"))
            await conn.execute(text("UPDATE stock_products SET held = 0 WHERE product_id = :p"),
                               {"p": PRODUCT})

    # Past the settling time and the effects' landing (1 + 3 s), before the orphan bound.
    sweep = asyncio.create_task(swept_after(5.0))
    try:
        await sale_run.wait_for_returns(databases["stock"], PRODUCT, due_at=time.time())
        assert sweep.done()  # not given up after the settling time alone
    finally:
        sweep.cancel()
    state = await read_state(PRODUCT, databases)
    state.public_remaining = sale.total - sale.sold
    assert check(state, answers={200: 10, 409: 3}).breaches == {}
