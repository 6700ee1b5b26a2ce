"""The rules of orders (orders/creation.py, transitions.py, effects.py) in-process, against real
MariaDB and Redis and a real stock_service over loopback HTTP (its own schema): what each part
decides, and what it owes stock_service afterwards."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from order_service.clients import PaymentsClient, StockClient
from order_service.orders import drain as drain_module
from order_service.orders.admission import OrderAdmission
from order_service.orders.creation import OrderCreation
from order_service.orders.drain import LineDrain
from order_service.orders.effects import OrderEffects
from order_service.orders.errors import (
    OrderNotCancellable,
    OrderNotFound,
    OrderNotPayable,
    UnpaidOrderExists,
)
from order_service.orders.expiry import OrderExpiry
from order_service.orders.ids import OrderIds
from order_service.orders.line import new_ticket
from order_service.orders.repository import NewOrder, OrderRepository
from order_service.orders.schemas import OrderCreate
from order_service.orders.scripts import LineKeys, LineScripts, NewPlace, Record
from order_service.orders.transitions import OrderTransitions
from order_service.orders.writer import OrderWriter
from shared.clock import utcnow
from shared.db import Transactions, create_engine, create_sessionmaker
from shared.errors import ProblemError
from shared.http import service_client
from shared.idempotency import IdempotencyKeyInUse, IdempotencyKeys, StoredAnswer
from shared.internal.payments import by_order_path
from shared.internal.stock import Hold, SoldOut, StockRegistration, hold_path, product_path
from shared.reads import ReadSession
from shared.sold_out import InFlightLimit, SoldOutMemory
from shared.testing.apps import service_app
from shared.testing.datastores import fresh_database
from shared.testing.identity import signer
from shared.testing.net import ThreadedServer, free_port

# Only to leave Redis as a decision that died before the ledger heard of its hold does.
from stock_service.stock.scripts import StockScripts

_ids = itertools.count(int.from_bytes(os.urandom(3), "big") * 1000 + 1)


def new_id() -> int:
    return next(_ids)


@pytest.fixture(scope="module")
def stock_url(redis_url: str) -> Iterator[str]:
    server = ThreadedServer(service_app(
        "stock_service", log_level="WARNING", redis_url=redis_url,
        database_url=fresh_database("stock_service", "preorder_stock", "orders"),
        reconcile_interval_seconds=3600, expired_hold_interval_seconds=3600)).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def order_database() -> str:
    return fresh_database("order_service", "preorder_order", "service")


@dataclass
class Orders:
    admission: OrderAdmission
    creation: OrderCreation
    transitions: OrderTransitions
    expiry: OrderExpiry
    effects: OrderEffects
    stock: StockClient
    transactions: Transactions[OrderRepository]


@pytest.fixture(scope="module")
async def orders(stock_url: str, order_database: str, redis: Redis) -> AsyncIterator[Orders]:
    """The parts of orders as the lifespan wires them (no loops: tests run their rounds), with a
    sold-out memory long enough to be seen, and no payment_service (nobody listens there)."""
    async with order_parts(stock_url, order_database, redis) as parts:
        yield parts


@asynccontextmanager
async def order_parts(stock_url: str, order_database: str, redis: Redis) -> AsyncIterator[Orders]:
    """One process's parts of orders; called again, another replica's (its own pools and
    memories, the same MySQL, Redis and stock_service)."""
    engine = create_engine(order_database, pool_size=5)
    reads = await ReadSession.open(order_database, pool_size=2)
    transactions = Transactions(create_sessionmaker(engine), OrderRepository)
    async with service_client("stock_service", stock_url, signer=signer("order_service"),
                              timeout_seconds=5) as stock_http, \
            service_client("payment_service", f"http://127.0.0.1:{free_port()}",
                           signer=signer("order_service"),
                           timeout_seconds=1) as payment_http:
        stock, payments = StockClient(stock_http), PaymentsClient(payment_http)
        admission = OrderAdmission(sold_out=SoldOutMemory(60),
                                   reserving=InFlightLimit(4, wait_seconds=5))
        effects = OrderEffects(transactions=transactions, reads=reads, admission=admission,
                               stock=stock, payments=payments,
                               orphan_after=timedelta(seconds=60))
        transitions = OrderTransitions(transactions=transactions, reads=reads, effects=effects,
                                       lease=timedelta(seconds=30))
        expiry = OrderExpiry(transactions=transactions, effects=effects, payments=payments,
                             transitions=transitions, check_timeout=1.0)
        yield Orders(
            admission=admission,
            creation=OrderCreation(transactions=transactions, admission=admission, stock=stock,
                                   ids=OrderIds(transactions),
                                   keys=IdempotencyKeys(redis, namespace="orders-service-test"),
                                   payment_ttl=timedelta(minutes=10)),
            transitions=transitions, expiry=expiry, effects=effects, stock=stock,
            transactions=transactions)
        await expiry.drain()
        await effects.drain()
    await reads.close()
    await engine.dispose()


async def register(orders: Orders, *, total: int, price: int = 10_000,
                   limit_per_user: int | None = None) -> int:
    product_id = new_id()
    registration = StockRegistration(seller_id=1, price=price, total=total,
                                     limit_per_user=limit_per_user)
    body = registration.model_dump(mode="json") | {"sale_opens_at": "2020-01-01T00:00:00Z"}
    response = await orders.stock.client.request("PUT", product_path(product_id), json_body=body)
    assert response.status == 200, response.body
    return product_id


async def hold_of(orders: Orders, product_id: int, order_id: int) -> Hold | None:
    response = await orders.stock.client.request("GET", hold_path(product_id, order_id))
    return Hold.model_validate(response.body) if response.status == 200 else None


async def hold_state(orders: Orders, product_id: int, order_id: int) -> str | None:
    hold = await hold_of(orders, product_id, order_id)
    return None if hold is None else hold.state


async def create(orders: Orders, user_id: int, product_id: int, quantity: int = 1) -> dict[str, object]:
    answer = await orders.creation.create(
        user_id, OrderCreate(product_id=product_id, quantity=quantity), None)
    assert answer.status == 201, answer.body
    assert isinstance(answer.body, dict)
    return answer.body


async def test_an_order_is_written_with_the_units_held_for_it(orders: Orders) -> None:
    product_id, buyer = await register(orders, total=3, price=2_500), new_id()
    order = await create(orders, buyer, product_id, quantity=2)
    assert (order["status"], order["amount"], order["unit_price"]) == ("pending_payment", 5_000,
                                                                       2_500)
    order_id = int(str(order["id"]))
    hold = await hold_of(orders, product_id, order_id)
    assert hold is not None
    assert (hold.state, hold.quantity, hold.user_id) == ("held", 2, buyer)
    assert (await orders.transitions.get(buyer, order_id)).status == "pending_payment"
    with pytest.raises(OrderNotFound):
        await orders.transitions.get(new_id(), order_id)  # someone else's


async def test_a_sold_out_answer_is_remembered_and_forgotten_when_units_come_back(
    orders: Orders
) -> None:
    product_id, buyer = await register(orders, total=1), new_id()
    order_id = int(str((await create(orders, buyer, product_id))["id"]))
    with pytest.raises(SoldOut):  # raised, for the route's handler to answer
        await orders.creation.create(new_id(), OrderCreate(product_id=product_id, quantity=1),
                                     None)
    assert orders.admission.sold_out.still_refuses(product_id, 1)
    # Cancelled: the answer waits for the units to be back, and this process may sell them.
    cancelled = await orders.transitions.cancel(buyer, order_id)
    assert cancelled.status == "cancelled"
    assert not orders.admission.sold_out.still_refuses(product_id, 1)
    assert await hold_state(orders, product_id, order_id) == "released"
    await create(orders, new_id(), product_id)


async def test_a_slot_waited_for_in_front_is_the_one_the_order_uses(orders: Orders) -> None:
    product_id = await register(orders, total=5)
    reserving = orders.admission.reserving
    slot = await reserving.take_turn(product_id)
    assert slot is not None
    answer = await orders.creation.create(new_id(), OrderCreate(product_id=product_id,
                                                                quantity=1), None, slot=slot)
    assert answer.status == 201
    assert slot.given_back
    assert product_id not in reserving._slots  # nothing else held or waited


async def test_a_memory_refusal_asks_no_one(orders: Orders) -> None:
    product_id = new_id()  # stock_service has never heard of it: asking would be a 404
    orders.admission.sold_out.remember(product_id, 1)
    with pytest.raises(SoldOut):
        await orders.admission.reserve(product_id, 1, slot=None, ask=_never_asked)


async def _never_asked() -> None:
    raise AssertionError("stock_service was asked")


async def test_a_cancel_ends_one_way_only(orders: Orders) -> None:
    product_id, buyer = await register(orders, total=2), new_id()
    order_id = int(str((await create(orders, buyer, product_id))["id"]))
    with pytest.raises(OrderNotFound):
        await orders.transitions.cancel(new_id(), order_id)
    assert (await orders.transitions.cancel(buyer, order_id)).status == "cancelled"
    with pytest.raises(OrderNotCancellable, match="cancelled"):
        await orders.transitions.cancel(buyer, order_id)


async def test_a_payment_needs_the_lease_it_was_given(orders: Orders) -> None:
    product_id, buyer = await register(orders, total=2), new_id()
    order_id = int(str((await create(orders, buyer, product_id))["id"]))
    with pytest.raises(OrderNotFound):
        await orders.transitions.lease_for_payment(order_id, new_id())
    lease = await orders.transitions.lease_for_payment(order_id, buyer)
    assert lease.amount == 10_000
    with pytest.raises(OrderNotPayable, match="in progress"):
        await orders.transitions.lease_for_payment(order_id, buyer)
    with pytest.raises(OrderNotPayable):
        await orders.transitions.mark_paid(order_id, payment_id=1, token="0" * 32)
    paid = await orders.transitions.mark_paid(order_id, payment_id=1, token=lease.lease_token)
    assert paid.status == "paid"
    await orders.effects.drain()
    assert await hold_state(orders, product_id, order_id) == "committed"
    # Told again (a retry): the same answer, nothing moves twice.
    again = await orders.transitions.mark_paid(order_id, payment_id=1, token=lease.lease_token)
    assert again.status == "paid"


async def test_an_unpaid_order_past_its_deadline_expires_and_gives_its_units_back(
    orders: Orders
) -> None:
    product_id, buyer = await register(orders, total=1), new_id()
    order_id = int(str((await create(orders, buyer, product_id))["id"]))
    async with orders.transactions.write() as repository:
        await repository.session.execute(
            text("UPDATE orders SET expires_at = :past WHERE id = :id"),
            {"past": utcnow() - timedelta(seconds=1), "id": order_id})
    await expire_round(orders.expiry)
    await orders.effects.drain()
    assert (await orders.transitions.get(buyer, order_id)).status == "expired"
    assert await hold_state(orders, product_id, order_id) == "released"


async def test_an_effect_that_could_not_land_is_carried_out_by_the_next_round(
    orders: Orders
) -> None:
    product_id, buyer = await register(orders, total=1), new_id()
    order_id = int(str((await create(orders, buyer, product_id))["id"]))
    # The cancel is written with its release owed; stock_service cannot be told yet.
    async with orders.transactions.write() as repository:
        assert await repository.cancel(order_id, buyer, from_status="pending_payment")
    async with orders.transactions.read() as repository:
        owed = await repository.settling(order_id)
    assert owed is not None
    assert owed.stock_effect == "release"
    async with orders.transactions.write() as repository:
        await repository.session.execute(
            text("UPDATE orders SET updated_at = :old WHERE id = :id"),
            {"old": utcnow() - timedelta(minutes=1), "id": order_id})
    assert await orders.effects.settle_overdue() >= 1
    async with orders.transactions.read() as repository:
        settled = await repository.settling(order_id)
    assert settled is not None
    assert settled.stock_effect is None
    assert await hold_state(orders, product_id, order_id) == "released"


async def test_a_hold_no_order_was_made_for_is_released_once_old_enough(orders: Orders) -> None:
    product_id, orphan = await register(orders, total=2), new_id()
    response = await orders.stock.client.request(
        "PUT", hold_path(product_id, orphan), json_body={"user_id": new_id(), "quantity": 1})
    assert response.status == 200
    assert await orders.effects.release_orphan_holds() == 0  # too young to be an orphan
    orders.effects.orphan_after = timedelta(0)
    try:
        assert await orders.effects.release_orphan_holds() >= 1
    finally:
        orders.effects.orphan_after = timedelta(seconds=60)
    assert await hold_state(orders, product_id, orphan) == "released"


async def test_a_fresh_hold_is_no_orphan_whatever_order_services_clock_says(
    orders: Orders, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The age of a hold is judged by stock_service's clock (the one its created_at comes
    from): this process's clock two minutes ahead must not make a fresh hold look orphaned."""
    product_id, fresh = await register(orders, total=2), new_id()
    response = await orders.stock.client.request(
        "PUT", hold_path(product_id, fresh), json_body={"user_id": new_id(), "quantity": 1})
    assert response.status == 200
    ahead = utcnow() + timedelta(minutes=2)
    monkeypatch.setattr("order_service.orders.effects.utcnow", lambda: ahead)
    await orders.effects.release_orphan_holds()
    assert await hold_state(orders, product_id, fresh) == "held"


async def test_an_unpaid_order_is_the_answer_before_the_limit_and_before_a_hold(
    orders: Orders, redis: Redis
) -> None:
    product_id, buyer = await register(orders, total=5, limit_per_user=1), new_id()
    await create(orders, buyer, product_id)
    # Made through this process: refused before a slot or a hold is taken.
    with pytest.raises(UnpaidOrderExists):
        await create(orders, buyer, product_id)
    # Made elsewhere (another replica): stock_service's limit refuses it, and the answer still
    # names the unpaid order.
    orders.creation._ordered_here.clear()
    with pytest.raises(UnpaidOrderExists):
        await create(orders, buyer, product_id)
    meta = await redis.hgetall(f"{{p:{product_id}}}:meta")
    assert meta["held"] == "1"


async def test_a_keyed_retry_whose_first_answer_was_lost_gets_that_order(
    orders: Orders, redis: Redis
) -> None:
    product_id, buyer = await register(orders, total=5), new_id()
    body = OrderCreate(product_id=product_id, quantity=1)
    first = await orders.creation.create(buyer, body, "k-lost")
    assert first.status == 201
    # Redis lost the stored answer (a failover, say): the unpaid order is the retry's answer.
    await redis.delete(orders.creation.keys._redis_key(buyer, "k-lost"))
    again = await orders.creation.create(buyer, body, "k-lost")
    assert (again.status, again.body) == (201, first.body)


# Expiry with payment_service unreachable, slow, or answering what makes one order fail.

# What the stand-in payment_service answers per order: a PaymentView's fields, or "never".
PAYMENT_ANSWERS: dict[int, dict[str, object] | str] = {}


def stand_in_payments() -> FastAPI:
    app = FastAPI()

    @app.get(by_order_path(0).rsplit("/", 1)[0] + "/{order_id}")
    async def latest(order_id: int) -> Response:
        answer = PAYMENT_ANSWERS.get(order_id)
        if answer == "never":
            await asyncio.sleep(30)
        if not isinstance(answer, dict):
            return Response(status_code=404)
        return JSONResponse(answer)

    return app


@pytest.fixture(scope="module")
def payments_url() -> Iterator[str]:
    server = ThreadedServer(stand_in_payments()).start()
    try:
        yield server.url
    finally:
        server.stop()


async def due_order(orders: Orders, product_id: int, *, seconds_ago: float,
                    lease: str | None = None, lease_until_in: float = -1.0) -> int:
    """An unpaid order past its deadline by `seconds_ago`; with `lease`, a payment lease that
    ran out `lease_until_in` seconds from now (negative: in the past)."""
    order_id = int(str((await create(orders, new_id(), product_id))["id"]))
    now = utcnow()
    async with orders.transactions.write() as repository:
        await repository.session.execute(
            text("UPDATE orders SET expires_at = :past, lease_token = :token, "
                 "lease_until = :until WHERE id = :id"),
            {"past": now - timedelta(seconds=seconds_ago), "token": lease,
             "until": now + timedelta(seconds=lease_until_in) if lease else None,
             "id": order_id})
    return order_id


async def statuses(orders: Orders, order_ids: list[int]) -> list[str]:
    async with orders.transactions.read() as repository:
        found = [await repository.order(order_id) for order_id in order_ids]
    return [order.status if order else "missing" for order in found]


async def expire_round(expiry: OrderExpiry, *, batch: int = 200) -> None:
    """One round, and the payment checks it began."""
    await expiry.expire_due(batch=batch)
    await expiry.drain()


def expiry_over(orders: Orders, payments: PaymentsClient) -> OrderExpiry:
    return OrderExpiry(transactions=orders.transactions, effects=orders.effects,
                       payments=payments, transitions=orders.transitions, check_timeout=1.0)


async def test_orders_whose_lease_ran_out_expire_with_payment_service_unreachable(
    orders: Orders
) -> None:
    """Nobody listens where payment_service should be: the bound on expiry still holds, and
    the units come back (a charge that succeeds later finds the order expired: voided)."""
    product_id = await register(orders, total=4)
    lapsed = [await due_order(orders, product_id, seconds_ago=5 - n, lease="a" * 32)
              for n in range(3)]
    unleased = await due_order(orders, product_id, seconds_ago=1)
    await expire_round(orders.expiry)
    await orders.effects.drain()
    assert await statuses(orders, [*lapsed, unleased]) == ["expired"] * 4
    assert [await hold_state(orders, product_id, order_id) for order_id in lapsed] \
        == ["released"] * 3


async def test_a_payment_service_that_never_answers_holds_up_no_order(
    orders: Orders, payments_url: str
) -> None:
    product_id = await register(orders, total=4)
    lapsed = [await due_order(orders, product_id, seconds_ago=5 - n, lease="b" * 32)
              for n in range(3)]
    unleased = await due_order(orders, product_id, seconds_ago=1)
    PAYMENT_ANSWERS.update(dict.fromkeys(lapsed, "never"))
    async with service_client("payment_service", payments_url, signer=signer("order_service"),
                              timeout_seconds=60) as slow:
        expiry = expiry_over(orders, PaymentsClient(slow))
        async with asyncio.timeout(20):  # one check alone would take 60 s, three in a row 180
            await expiry.expire_due()
            # Not held up by the checks still out: expired by the round itself.
            assert await statuses(orders, [unleased]) == ["expired"]
            await expiry.drain()
        assert await statuses(orders, lapsed) == ["expired"] * 3


async def test_an_order_whose_check_fails_is_skipped_not_the_round(
    orders: Orders, payments_url: str
) -> None:
    product_id = await register(orders, total=2)
    # Its payment succeeded under another lease than the order's: mark_paid refuses it.
    refused = await due_order(orders, product_id, seconds_ago=5, lease="c" * 32)
    PAYMENT_ANSWERS[refused] = {"id": new_id(), "order_id": refused, "status": "succeeded",
                                "lease_token": "d" * 32}
    unleased = await due_order(orders, product_id, seconds_ago=1)
    async with service_client("payment_service", payments_url, signer=signer("order_service"),
                              timeout_seconds=5) as answering:
        await expire_round(expiry_over(orders, PaymentsClient(answering)))
    assert await statuses(orders, [refused, unleased]) == ["pending_payment", "expired"]


async def test_orders_skipped_at_the_head_of_the_deadline_order_starve_none_behind(
    orders: Orders, payments_url: str
) -> None:
    product_id = await register(orders, total=5)
    running = [await due_order(orders, product_id, seconds_ago=9 - n, lease="e" * 32,
                               lease_until_in=30) for n in range(2)]
    pending = [await due_order(orders, product_id, seconds_ago=7 - n, lease="f" * 32)
               for n in range(2)]
    PAYMENT_ANSWERS.update({order_id: {"id": new_id(), "order_id": order_id,
                                       "status": "pending", "lease_token": "f" * 32}
                            for order_id in pending})
    unleased = await due_order(orders, product_id, seconds_ago=1)
    async with service_client("payment_service", payments_url, signer=signer("order_service"),
                              timeout_seconds=5) as answering:
        await expire_round(expiry_over(orders, PaymentsClient(answering)), batch=3)
    assert await statuses(orders, [*running, *pending, unleased]) == \
        ["pending_payment"] * 4 + ["expired"]


# The time budget of a create (ORDER_CREATE_BUDGET_SECONDS) bounds its last wait too: the insert.

class SlowWriter(OrderWriter):
    """A database that takes `delay` seconds to write each batch (a lock wait, a slow disk)."""

    def __init__(self, transactions: Transactions[OrderRepository], delay: float) -> None:
        super().__init__(transactions)
        self.delay = delay

    async def _write_together(self, rows: list[NewOrder]) -> None:
        await asyncio.sleep(self.delay)
        await super()._write_together(rows)


def with_budget(orders: Orders, writer: OrderWriter, budget_seconds: float = 1.0) -> OrderCreation:
    return OrderCreation(
        transactions=orders.transactions, admission=orders.admission, stock=orders.stock,
        ids=OrderIds(orders.transactions), keys=orders.creation.keys,
        payment_ttl=timedelta(minutes=10), budget_seconds=budget_seconds, writer=writer)


async def test_an_insert_slower_than_the_budget_is_answered_in_time_and_its_retry_gets_the_order(
    orders: Orders
) -> None:
    creation = with_budget(orders, SlowWriter(orders.transactions, delay=2.5))
    product_id, buyer = await register(orders, total=3), new_id()
    body = OrderCreate(product_id=product_id, quantity=1)
    started = time.monotonic()
    with pytest.raises(ProblemError) as answered:
        await creation.create(buyer, body, "k-slow-insert")
    # Answered within the budget (and its 503 says to ask again), not when the insert ends.
    assert time.monotonic() - started < 2.0
    assert answered.value.status == 503
    assert answered.value.headers.get("Retry-After") == "1"
    # Still being written: the units stay held for it, and a retry is told to wait.
    assert await remaining(orders, product_id) == 2
    with pytest.raises(IdempotencyKeyInUse):
        await creation.create(buyer, body, "k-slow-insert")
    # Written once the database answers: the retry gets that order, never a second one.
    deadline = time.monotonic() + 10
    while True:
        try:
            again = await creation.create(buyer, body, "k-slow-insert")
            break
        except IdempotencyKeyInUse:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
    assert again.status == 201
    assert isinstance(again.body, dict)
    order_id = int(again.body["id"])
    assert await statuses(orders, [order_id]) == ["pending_payment"]
    assert await hold_state(orders, product_id, order_id) == "held"
    assert await remaining(orders, product_id) == 2  # one hold, never a second
    await creation.drain(timeout=5)


async def test_an_insert_that_fails_after_the_budget_gives_its_units_back(
    orders: Orders
) -> None:
    """The insert goes on after the answer; when it fails, the hold goes back as it would have
    had the request waited, and the key is free for a retry that does the work."""
    creation = with_budget(orders, FailingSlowWriter(orders.transactions, delay=2.0))
    product_id, buyer = await register(orders, total=1), new_id()
    body = OrderCreate(product_id=product_id, quantity=1)
    with pytest.raises(ProblemError) as answered:
        await creation.create(buyer, body, "k-slow-fail")
    assert answered.value.status == 503
    deadline = time.monotonic() + 10
    assert await remaining(orders, product_id) == 0  # held while the insert may land
    while await remaining(orders, product_id) != 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    # The key is free again: the retry does the work, with the unit that came back.
    again = await orders.creation.create(buyer, body, "k-slow-fail")
    assert again.status == 201


class FailingSlowWriter(SlowWriter):
    async def _write_together(self, rows: list[NewOrder]) -> None:
        await asyncio.sleep(self.delay)
        raise OperationalError("INSERT", {}, Exception(2013, "Lost connection"))


# Two replicas run every loop at the same time (docs/replicas.md, "Background loops"): no order
# moves twice and no unit comes back twice.


async def remaining(orders: Orders, product_id: int) -> int:
    response = await orders.stock.client.request("GET", f"/api/v1/products/{product_id}/stock")
    assert response.status == 200, response.body
    return int(response.body["remaining"])


@pytest.fixture
async def replica(stock_url: str, order_database: str, redis: Redis) -> AsyncIterator[Orders]:
    async with order_parts(stock_url, order_database, redis) as parts:
        yield parts


async def past_due(orders: Orders, order_ids: list[int]) -> None:
    async with orders.transactions.write() as repository:
        for order_id in order_ids:
            await repository.session.execute(
                text("UPDATE orders SET expires_at = :past WHERE id = :id"),
                {"past": utcnow() - timedelta(seconds=1), "id": order_id})


async def test_two_replicas_expiring_at_once_expire_each_order_once(
        orders: Orders, replica: Orders) -> None:
    product_id = await register(orders, total=30)
    order_ids = [int(str((await create(orders, new_id(), product_id))["id"])) for _ in range(30)]
    await past_due(orders, order_ids)
    async with orders.transactions.read() as repository:
        due = await repository.past_deadline(now=utcnow(), after=None, limit=10_000)
    unleased = sum(not order.leased for order in due)
    leased = len(due) - unleased
    moved = await asyncio.gather(orders.expiry.expire_due(batch=7),
                                 replica.expiry.expire_due(batch=7))
    for parts in (orders, replica):
        await parts.expiry.drain()
        await parts.effects.drain()
    # Conditional UPDATE: each due order (these 30, and any an earlier test left) moved by one.
    # An earlier test's order with a payment lease counts as a check begun, on each replica
    # (a CI run had one: 34 moved of 33 due).
    assert unleased >= 30
    assert unleased <= sum(moved) <= unleased + 2 * leased
    assert await remaining(orders, product_id) == 30
    for order_id in order_ids:
        assert await hold_state(orders, product_id, order_id) == "released"


async def test_two_replicas_settling_owed_effects_at_once_give_each_unit_back_once(
        orders: Orders, replica: Orders) -> None:
    product_id = await register(orders, total=20)
    buyers = [new_id() for _ in range(20)]
    order_ids = [int(str((await create(orders, buyer, product_id))["id"])) for buyer in buyers]
    async with orders.transactions.write() as repository:
        for order_id, buyer in zip(order_ids, buyers, strict=True):
            assert await repository.cancel(order_id, buyer, from_status="pending_payment")
        await repository.session.execute(
            text("UPDATE orders SET updated_at = :old WHERE product_id = :p"),
            {"old": utcnow() - timedelta(minutes=1), "p": product_id})
    await asyncio.gather(orders.effects.settle_overdue(), replica.effects.settle_overdue())
    assert await remaining(orders, product_id) == 20
    for order_id in order_ids:
        assert await hold_state(orders, product_id, order_id) == "released"
        async with orders.transactions.read() as repository:
            settled = await repository.settling(order_id)
        assert settled is not None
        assert settled.stock_effect is None


async def test_two_replicas_releasing_orphan_holds_at_once_give_each_unit_back_once(
        orders: Orders, replica: Orders) -> None:
    product_id = await register(orders, total=15)
    for _ in range(15):
        response = await orders.stock.client.request(
            "PUT", hold_path(product_id, new_id()), json_body={"user_id": new_id(), "quantity": 1})
        assert response.status == 200
    assert await remaining(orders, product_id) == 0
    for parts in (orders, replica):
        parts.effects.orphan_after = timedelta(0)
    try:
        await asyncio.gather(orders.effects.release_orphan_holds(page_size=4),
                             replica.effects.release_orphan_holds(page_size=4))
    finally:
        for parts in (orders, replica):
            parts.effects.orphan_after = timedelta(seconds=60)
    assert await remaining(orders, product_id) == 15



def line_scripts(redis: Redis, *, lease_ms: int = 30_000) -> LineScripts:
    channel = f"test-{os.urandom(4).hex()}"
    return LineScripts(redis, keep_ms=60_000, lease_ms=lease_ms, max_waiting=10,
                       tickets_channel=channel, open_channel=channel + "-open", max_deciding=8)


FirstHold = Literal["kept", "given back", "never written"]


async def decided_again(parts: Orders, redis: Redis, *,
                        first_hold: FirstHold) -> tuple[Record, int]:
    """A product's one unit, and a place whose first decision died after its reserve (its
    order id noted, the unit held under it, no order written), decided again by a drain once
    its lease ran out: the place's record then, and the first decision's order id.
    `first_hold`: the first decision's hold kept, given back by the orphan sweep, or granted by
    Redis and given back before the ledger heard of it."""
    scripts = line_scripts(redis, lease_ms=300)
    drain = LineDrain(scripts=scripts, admission=parts.admission, creation=parts.creation)
    product_id = await register(parts, total=1)
    buyer, ticket = new_id(), new_ticket(product_id)
    await scripts.join(product_id, [NewPlace(
        mode="join", ticket=ticket, user_id=buyer, quantity=1, key="", key_field="",
        fingerprint="", arrived_us=time.time_ns() // 1000)])
    claimed, *_ = await scripts.claim(product_id, 1)
    assert [place.ticket for place in claimed] == [ticket]
    first_id = await parts.creation.ids.next()
    await scripts.note(product_id, [(ticket, first_id)])
    if first_hold == "never written":
        live = StockScripts(redis)
        assert (await live.reserve(product_id, first_id, buyer, 1)).word == "held"
        await live.release(product_id, first_id)
    else:
        await parts.stock.reserve(product_id=product_id, order_id=first_id, user_id=buyer,
                                  quantity=1, expires_at=utcnow() + timedelta(minutes=10))
    if first_hold == "given back":  # as the orphan sweep does
        assert await parts.stock.release(product_id=product_id, order_id=first_id)
    await asyncio.sleep(0.4)  # its lease runs out
    try:
        drain.start(product_id)
        deadline = time.monotonic() + 10
        while True:
            [(record, _)] = await scripts.read(product_id, [ticket])
            assert record is not None
            if record.state in ("ordered", "refused") or time.monotonic() > deadline:
                return record, first_id
            await asyncio.sleep(0.05)
    finally:
        await drain.close()


async def test_a_place_decided_again_takes_over_the_hold_its_first_decision_left(
    stock_url: str, order_database: str, redis: Redis
) -> None:
    """Decided again, the place takes the dead decision's hold over (the order gets its id)
    instead of reserving beside it: with the product's last unit held by that decision, it
    would otherwise be refused `sold_out` by its own hold."""
    async with order_parts(stock_url, order_database, redis) as parts:
        record, first_id = await decided_again(parts, redis, first_hold="kept")
        assert record.state == "ordered", record.body
        assert record.body is not None
        assert json.loads(record.body)["order"]["id"] == first_id


@pytest.mark.parametrize("first_hold", ["given back", "never written"])
async def test_a_place_decided_again_with_no_hold_to_take_over_reserves_afresh(
    stock_url: str, order_database: str, redis: Redis, first_hold: FirstHold
) -> None:
    """A released hold is no hold to take over: the place reserves the unit afresh, under an
    id of its own. Nor is one Redis granted and gave back before the ledger heard of it: its
    resent reserve finds no hold (404 hold_not_found), and the place was refused (503, three
    times; once answered 404 as if the product were unknown). The new id is noted in the
    place's record in the old one's stead: a decision dying after reserving under it leaves
    its hold to the next, not an orphan beside which the next reserves again."""
    async with order_parts(stock_url, order_database, redis) as parts:
        record, first_id = await decided_again(parts, redis, first_hold=first_hold)
        assert record.state == "ordered", record.body
        assert record.body is not None
        ordered = json.loads(record.body)["order"]["id"]
        assert ordered != first_id
        assert record.order_id == ordered


async def test_the_lines_answers_wait_for_the_request_that_went_straight_on_before_them(
    stock_url: str, order_database: str, redis: Redis
) -> None:
    """A place that went straight on is answered by its request's response, which crosses
    the busy loops after the line's published answers would: the places admitted after it
    keep their answers until that request was answered."""
    async with order_parts(stock_url, order_database, redis) as parts:
        scripts = line_scripts(redis)
        drain = LineDrain(scripts=scripts, admission=parts.admission, creation=parts.creation)
        product_id = await register(parts, total=5)
        first, second = new_id(), new_id()
        straight, behind = new_ticket(product_id), new_ticket(product_id)
        arrived = time.time_ns() // 1000
        [went] = await scripts.join(product_id, [NewPlace(
            mode="go", ticket=straight, user_id=first, quantity=1, key="", key_field="",
            fingerprint="", arrived_us=arrived)])
        assert went.go
        turn = drain.went_straight_on(product_id, straight)
        [joined] = await scripts.join(product_id, [NewPlace(
            mode="join", ticket=behind, user_id=second, quantity=1, key="", key_field="",
            fingerprint="", arrived_us=arrived + 1)])
        assert not joined.go
        try:
            drain.start(product_id)
            deadline = time.monotonic() + 10
            while drain.turns(product_id).waiting < 1:  # decided, its answer kept
                assert time.monotonic() < deadline, "the place behind was never decided"
                await asyncio.sleep(0.01)
            [(record, _)] = await scripts.read(product_id, [behind])
            assert record is not None
            assert record.state == "deciding"
            order = {"id": 1, "user_id": first, "product_id": product_id}
            drain.straight_answered(product_id, straight, StoredAnswer(201, order), turn)
            while True:
                records = [r for r, _ in await scripts.read(product_id, [straight, behind])]
                if all(r is not None and r.state == "ordered" for r in records) or \
                        time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.01)
            assert [r.state if r else None for r in records] == ["ordered", "ordered"]
            [straight_record, _] = records
            assert straight_record is not None
            assert straight_record.body is not None
            assert json.loads(straight_record.body)["order"] == order
        finally:
            await drain.close()


async def test_a_request_that_went_straight_on_gives_its_place_its_answer_at_once(
    stock_url: str, order_database: str, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its buyer has the answer already: the place takes it at once, whatever turn it had (a
    retry with the key then finds it, not a decision still running)."""
    # Nothing is overtaken within the test's time: only an answer given at once is seen.
    monkeypatch.setattr(drain_module, "OVERTAKE_AFTER_SECONDS", 60.0)
    async with order_parts(stock_url, order_database, redis) as parts:
        scripts = line_scripts(redis)
        drain = LineDrain(scripts=scripts, admission=parts.admission, creation=parts.creation)
        product_id = await register(parts, total=5)
        first, second = new_ticket(product_id), new_ticket(product_id)
        arrived = time.time_ns() // 1000
        turns = []
        for offset, ticket in enumerate((first, second)):
            [went] = await scripts.join(product_id, [NewPlace(
                mode="go", ticket=ticket, user_id=new_id(), quantity=1, key="", key_field="",
                fingerprint="", arrived_us=arrived + offset)])
            assert went.go
            turns.append(drain.went_straight_on(product_id, ticket))
        try:
            order = {"id": 2, "product_id": product_id}
            drain.straight_answered(product_id, second, StoredAnswer(201, order), turns[1])
            deadline = time.monotonic() + 10
            while True:
                [(record, _)] = await scripts.read(product_id, [second])
                assert record is not None
                if record.state != "deciding" or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.01)
            assert record.state == "ordered"
            [(earlier, _)] = await scripts.read(product_id, [first])
            assert earlier is not None
            assert earlier.state == "deciding"  # its request not answered yet
        finally:
            drain.straight_answered(product_id, first, None, turns[0])
            await drain.close()


async def test_a_first_hold_near_the_orphan_bound_is_given_back_not_taken_over(
    stock_url: str, order_database: str, redis: Redis
) -> None:
    """Past half the orphan sweep's bound the dead decision's hold is given back and the place
    reserves afresh: the sweep, which gives back old holds with no order, must never give back
    the hold of an order about to be written."""
    async with order_parts(stock_url, order_database, redis) as parts:
        parts.creation.take_over_within = timedelta(0)
        record, first_id = await decided_again(parts, redis, first_hold="kept")
        assert record.state == "ordered", record.body
        assert record.body is not None
        assert json.loads(record.body)["order"]["id"] != first_id
        first = await parts.stock.client.request("GET", hold_path(
            json.loads(record.body)["product_id"], first_id))
        assert (first.status, first.body["state"]) == (200, "released")


def places_in_line(product_id: int, count: int) -> list[NewPlace]:
    arrived = time.time_ns() // 1000
    return [NewPlace(mode="join", ticket=new_ticket(product_id), user_id=new_id(), quantity=1,
                     key="", key_field="", fingerprint="", arrived_us=arrived + index)
            for index in range(count)]


async def states_once_answered(scripts: LineScripts, product_id: int, tickets: list[str], *,
                               run: Callable[[], Awaitable[None]] | None = None,
                               within: float = 10.0) -> list[str | None]:
    """The places' states once every one is answered, or as they are `within` seconds on;
    `run()` is awaited between looks (a sweep's round, say)."""
    deadline = time.monotonic() + within
    while True:
        if run is not None:
            await run()
        states = [record.state if record else None
                  for record, _ in await scripts.read(product_id, tickets)]
        if all(state in ("ordered", "refused") for state in states) or \
                time.monotonic() > deadline:
            return states
        await asyncio.sleep(0.1)


class IdsFailingOnce:
    """Order ids whose first ask fails (MySQL away while a block of ids is taken)."""

    def __init__(self, ids: OrderIds) -> None:
        self.ids = ids
        self.failed = asyncio.Event()

    async def next(self) -> int:
        if not self.failed.is_set():
            self.failed.set()
            raise OperationalError("SELECT", None, Exception("MySQL went away"))
        return await self.ids.next()


async def test_a_drain_that_fails_while_admitting_puts_its_places_back_and_they_are_decided(
    stock_url: str, order_database: str, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The drain admitted three places, then could not have their order ids: the places go
    back to the line with their slots, and the sweeps (this process's, renewing what it still
    decides, and another replica's) see them decided. Before, the failed drain kept their slots
    and its sweep renewed their leases, and the line's hold with them, for as long as the
    process lived: nobody decided them."""
    async with order_parts(stock_url, order_database, redis) as a_parts, \
            order_parts(stock_url, order_database, redis) as b_parts:
        a_scripts, b_scripts = line_scripts(redis, lease_ms=1_000), line_scripts(redis,
                                                                                 lease_ms=1_000)
        a = LineDrain(scripts=a_scripts, admission=a_parts.admission, creation=a_parts.creation)
        b = LineDrain(scripts=b_scripts, admission=b_parts.admission, creation=b_parts.creation)
        product_id = await register(a_parts, total=3)
        places = places_in_line(product_id, 3)
        await a_scripts.join(product_id, places)
        await a_scripts.mark_open(product_id)
        failing = IdsFailingOnce(a_parts.creation.ids)
        monkeypatch.setattr(a_parts.creation, "ids", failing)
        slots = a_parts.admission.reserving.free(product_id)

        async def sweeps() -> None:
            await a.sweep()
            await b.sweep()

        try:
            a.start(product_id)
            async with asyncio.timeout(5):
                await failing.failed.wait()
            deadline = time.monotonic() + 5
            while product_id in a._drains:
                assert time.monotonic() < deadline, "the failed drain did not stop"
                await asyncio.sleep(0.01)
            # Let go as it failed: another process may drain the line at once.
            assert await redis.get(LineKeys.of(product_id).drainer) is None
            states = await states_once_answered(a_scripts, product_id,
                                                [place.ticket for place in places], run=sweeps)
            assert states == ["ordered"] * 3
            assert a_parts.admission.reserving.free(product_id) == slots
        finally:
            await a.close()
            await b.close()


async def test_a_place_taken_while_the_drain_lets_the_line_go_is_decided(
    stock_url: str, order_database: str, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The drain found nothing left and was letting the line go when a request here took a
    place and started it again: it drains on, instead of stopping with the place waiting."""
    async with order_parts(stock_url, order_database, redis) as parts:
        scripts = line_scripts(redis)
        drain = LineDrain(scripts=scripts, admission=parts.admission, creation=parts.creation)
        product_id = await register(parts, total=5)
        releasing, go_on = asyncio.Event(), asyncio.Event()
        release = scripts.release

        async def release_when_told(product_id: int) -> None:
            releasing.set()
            await go_on.wait()
            await release(product_id)

        monkeypatch.setattr(scripts, "release", release_when_told)
        first, second = places_in_line(product_id, 2)
        try:
            await scripts.join(product_id, [first])
            drain.start(product_id)
            async with asyncio.timeout(10):
                await releasing.wait()
            await scripts.join(product_id, [second])  # as admission does: join, then start
            drain.start(product_id)
            go_on.set()
            states = await states_once_answered(scripts, product_id,
                                                [first.ticket, second.ticket])
            assert states == ["ordered", "ordered"]
        finally:
            go_on.set()
            await drain.close()


async def test_a_line_is_admitted_by_one_process_only_near_the_end_of_its_stock(
    stock_url: str, order_database: str, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As stock_service's levels tell the units left (none heard yet: near the end, to be
    safe); a subscription that was down forgets what it heard."""
    async with order_parts(stock_url, order_database, redis) as parts:
        drain = LineDrain(scripts=line_scripts(redis), admission=parts.admission,
                          creation=parts.creation, one_drainer_below=50)
        product_id, other = new_id(), new_id()
        assert drain.one_drainer(product_id)
        drain.heard_level(f"{product_id} 1 51 0 0 1765000000000")
        drain.heard_level(f"{other} 1 50 0 0 1765000000000")
        drain.heard_level("not a level")
        assert not drain.one_drainer(product_id)
        assert drain.one_drainer(other)
        drain.heard_level(f"{product_id} 0 30 0 0 1765000000000")  # withdrawn, 30 left
        assert drain.one_drainer(product_id)
        drain.heard_level(f"{product_id} 1 900 0 0 1765000000000")
        drain.levels_missed()
        assert drain.one_drainer(product_id)
        # A level not heard again for a while may be far off: as unheard.
        monkeypatch.setattr(drain_module, "LEVEL_FRESH_SECONDS", 0.1)
        drain.heard_level(f"{product_id} 1 900 0 0 1765000000000")
        assert not drain.one_drainer(product_id)
        await asyncio.sleep(0.15)
        assert drain.one_drainer(product_id)


async def drained_holding_the_line(parts: Orders, redis: Redis, *, level: int | None) -> bool:
    """A drain deciding 10 places of a product of 40 units, 4 at a time, with `level` units
    left heard from stock_service (or none): whether it held the line while it drained."""
    scripts = line_scripts(redis)
    drain = LineDrain(scripts=scripts, admission=parts.admission, creation=parts.creation,
                      one_drainer_below=20)
    product_id = await register(parts, total=40)
    if level is not None:
        drain.heard_level(f"{product_id} 1 {level} 0 0 1765000000000")
    places = places_in_line(product_id, 10)
    await scripts.join(product_id, places)
    held = False
    try:
        drain.start(product_id)
        deadline = time.monotonic() + 20
        while product_id in drain._drains and time.monotonic() < deadline:
            holder = await redis.get(LineKeys.of(product_id).drainer)
            held = held or holder == scripts.me
        states = await states_once_answered(scripts, product_id,
                                            [place.ticket for place in places])
        assert states == ["ordered"] * 10
    finally:
        await drain.close()
    return held


async def test_far_from_the_end_a_drain_decides_without_holding_the_line(
    stock_url: str, order_database: str, redis: Redis
) -> None:
    async with order_parts(stock_url, order_database, redis) as parts:
        assert not await drained_holding_the_line(parts, redis, level=40)
        assert await drained_holding_the_line(parts, redis, level=None)


async def test_a_stopping_process_lets_its_line_go_and_admits_no_more(
    stock_url: str, order_database: str, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its decisions under way go on to their answers; the places still waiting are another
    process's to admit from that moment, not a lease later."""
    async with order_parts(stock_url, order_database, redis) as parts:
        scripts, other = line_scripts(redis), line_scripts(redis)
        drain = LineDrain(scripts=scripts, admission=parts.admission, creation=parts.creation)
        product_id = await register(parts, total=20)
        places = places_in_line(product_id, 10)
        await scripts.join(product_id, places)
        go_on = asyncio.Event()
        create_in_line = parts.creation.create_in_line

        async def held_back(*args: Any, **kwargs: Any) -> Any:
            await go_on.wait()
            return await create_in_line(*args, **kwargs)

        monkeypatch.setattr(parts.creation, "create_in_line", held_back)
        try:
            drain.start(product_id)
            deadline = time.monotonic() + 10
            while await redis.get(LineKeys.of(product_id).drainer) != scripts.me:
                assert time.monotonic() < deadline, "the drain never took the line"
                await asyncio.sleep(0.01)
            await drain.stop_admitting()
            # As many as leave ORDER_LINE_MAX_DECIDING (8 here) being decided, in arrival order.
            admitted, waiting, _, elsewhere = await other.claim(product_id, 10)
            assert [place.ticket for place in admitted] == [p.ticket for p in places[4:8]]
            assert (waiting, elsewhere) == (2, False)
            go_on.set()
            states = await states_once_answered(scripts, product_id,
                                                [place.ticket for place in places[:4]])
            assert states == ["ordered"] * 4
        finally:
            go_on.set()
            await drain.close()
