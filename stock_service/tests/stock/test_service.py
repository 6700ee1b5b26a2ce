"""The rules of stock/holds.py and stock/catalog.py against real MariaDB and Redis: holds never
oversell, the ledger guards whatever Redis says, and Redis is rebuilt to agree with it."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from shared.clock import utcnow
from shared.db import create_engine, create_sessionmaker
from shared.errors import DatabaseUnavailable, ProblemError
from shared.internal.stock import HoldAsk, StockRegistration
from stock_service.dependencies import Resources
from stock_service.stock.errors import (
    HoldNotFound,
    HoldReleased,
    ProductNotFound,
    SaleStarted,
    SoldOut,
    StockRebuilding,
)
from stock_service.stock.rebuild import EPOCH_KEY
from stock_service.stock.repository import LedgerRepository
from stock_service.stock.scripts import ProductKeys
from stock_service.tests.conftest import new_id
from stock_service.tests.factories import make_product, stock_parts


async def outcome(call: Any) -> str:
    """'held' / 'committed' / 'released', or the code of the problem raised."""
    try:
        hold = await call
    except ProblemError as problem:
        return problem.code
    return str(hold.state)


async def ledger_counts(session: AsyncSession, product_id: int) -> tuple[int, int, int]:
    """(remaining, held, sold) by the ledger, checked against the sum of its hold rows."""
    ledger = LedgerRepository(session)
    product = await ledger.product(product_id)
    assert product is not None
    assert await ledger.counts_from_holds(product_id) == (product.held, product.sold)
    await session.commit()
    return product.remaining, product.held, product.sold


async def redis_counts(redis: Redis, product_id: int) -> tuple[int, int, int]:
    values = await redis.hmget(ProductKeys.of(product_id).meta, "remaining", "held", "sold")
    remaining, held, sold = (int(value or 0) for value in values)
    return remaining, held, sold


@contextmanager
def statements_on(engine: AsyncEngine) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def test_a_hold_moves_the_counts_in_redis_and_the_ledger_alike(
    resources: Resources, redis: Redis, session: AsyncSession
) -> None:
    stock = resources
    product = await make_product(stock.catalog, total=5, price=12_000)
    order = new_id()
    hold = await stock.holds.reserve(product.product_id, order, user_id=7, quantity=2)
    assert (hold.state, hold.quantity, hold.unit_price) == ("held", 2, 12_000)
    assert await ledger_counts(session, product.product_id) == (3, 2, 0)
    assert await redis_counts(redis, product.product_id) == (3, 2, 0)

    assert (await stock.holds.commit(product.product_id, order)).state == "committed"
    assert await ledger_counts(session, product.product_id) == (3, 0, 2)
    assert await redis_counts(redis, product.product_id) == (3, 0, 2)

    # A paid order cancelled (refunded): its units come back too.
    assert (await stock.holds.release(product.product_id, order)).state == "released"
    assert await ledger_counts(session, product.product_id) == (5, 0, 0)
    assert await redis_counts(redis, product.product_id) == (5, 0, 0)


async def test_every_call_replayed_changes_nothing(
    resources: Resources, redis: Redis, session: AsyncSession
) -> None:
    stock = resources
    product = await make_product(stock.catalog, total=3)
    order = new_id()
    first = await stock.holds.reserve(product.product_id, order, user_id=7, quantity=1)
    again = await stock.holds.reserve(product.product_id, order, user_id=7, quantity=1)
    assert again == first
    assert await ledger_counts(session, product.product_id) == (2, 1, 0)
    await stock.holds.commit(product.product_id, order)
    await stock.holds.commit(product.product_id, order)
    assert await ledger_counts(session, product.product_id) == (2, 0, 1)
    await stock.holds.release(product.product_id, order)
    await stock.holds.release(product.product_id, order)
    assert await ledger_counts(session, product.product_id) == (3, 0, 0)
    assert await redis_counts(redis, product.product_id) == (3, 0, 0)
    # A sale that comes after the units went back is refused, not revived.
    with pytest.raises(HoldReleased):
        await stock.holds.commit(product.product_id, order)
    with pytest.raises(HoldNotFound):
        await stock.holds.release(product.product_id, new_id())


async def test_300_concurrent_reserves_for_30_units_hold_exactly_30(
    resources: Resources, redis: Redis, session: AsyncSession
) -> None:
    stock = resources
    product = await make_product(stock.catalog, total=30)
    results = await asyncio.gather(*(
        outcome(stock.holds.reserve(product.product_id, new_id(), user_id=1000 + n, quantity=1))
        for n in range(300)))
    assert Counter(results) == {"held": 30, "sold_out": 270}
    assert await ledger_counts(session, product.product_id) == (0, 30, 0)
    assert await redis_counts(redis, product.product_id) == (0, 30, 0)


async def test_a_limit_per_user_holds_when_each_user_sends_several_at_once(
    resources: Resources, session: AsyncSession
) -> None:
    stock = resources
    product = await make_product(stock.catalog, total=30, limit_per_user=1)
    users = [2000 + n for n in range(50)]
    results = await asyncio.gather(*(
        outcome(stock.holds.reserve(product.product_id, new_id(), user_id=user, quantity=1))
        for user in users for _ in range(3)))
    counts = Counter(results)
    assert counts["held"] == 30
    assert set(counts) <= {"held", "sold_out", "purchase_limit_exceeded"}
    per_user = await session.execute(text(
        "SELECT user_id, units FROM stock_user_counts WHERE product_id = :p AND units > 0"),
        {"p": product.product_id})
    assert all(units == 1 for _, units in per_user)
    assert await ledger_counts(session, product.product_id) == (0, 30, 0)


async def test_refusals_cost_no_mysql_work(resources: Resources) -> None:
    stock = resources
    product = await make_product(stock.catalog, total=1)
    await stock.holds.reserve(product.product_id, new_id(), user_id=1, quantity=1)
    closed = await make_product(stock.catalog, total=5, opens_at=utcnow() - timedelta(hours=2),
                                closes_at=utcnow() - timedelta(hours=1))
    with statements_on(resources.datastores.engine) as statements:
        for _ in range(20):
            with pytest.raises(SoldOut):
                await stock.holds.reserve(product.product_id, new_id(), user_id=2, quantity=1)
        assert await outcome(stock.holds.reserve(closed.product_id, new_id(), user_id=2,
                                           quantity=1)) == "sale_closed"
    assert statements == []


async def test_redis_raised_by_hand_never_sells_a_unit_twice(
    resources: Resources, redis: Redis, session: AsyncSession
) -> None:
    stock = resources
    product = await make_product(stock.catalog, total=3)
    for user in (1, 2, 3):
        await stock.holds.reserve(product.product_id, new_id(), user_id=user, quantity=1)
    # Redis believes there are ten more; the ledger knows there are none.
    await redis.hincrby(ProductKeys.of(product.product_id).meta, "remaining", 10)
    results = await asyncio.gather(*(
        outcome(stock.holds.reserve(product.product_id, new_id(), user_id=10 + n, quantity=1))
        for n in range(10)))
    assert set(results) <= {"sold_out", "upstream_unavailable"}
    assert "sold_out" in results
    assert await ledger_counts(session, product.product_id) == (0, 3, 0)
    await resources.live.drain()  # the refusal asked for a rebuild
    assert await redis_counts(redis, product.product_id) == (0, 3, 0)


async def test_redis_restored_from_an_older_snapshot_is_guarded_then_reconciled(
    resources: Resources, redis: Redis, session: AsyncSession
) -> None:
    stock, live = resources, resources.live
    product = await make_product(stock.catalog, total=10, limit_per_user=2)
    keys = ProductKeys.of(product.product_id)
    for user in (1, 2):
        await stock.holds.reserve(product.product_id, new_id(), user_id=user, quantity=1)
    snapshot = {key: await redis.dump(key) for key in (keys.meta, keys.users, keys.holds)}
    later = [new_id() for _ in range(8)]
    for n, order in enumerate(later):
        await stock.holds.reserve(product.product_id, order, user_id=100 + n // 2, quantity=1)
    await stock.holds.commit(product.product_id, later[0])
    # Back to the older state: Redis forgets 8 holds and a sale.
    for key, value in snapshot.items():
        assert value is not None
        await redis.restore(key, 0, value, replace=True)
    assert await redis_counts(redis, product.product_id) == (8, 2, 0)

    results = await asyncio.gather(*(
        outcome(stock.holds.reserve(product.product_id, new_id(), user_id=500 + n, quantity=1))
        for n in range(10)))
    assert "held" not in results
    assert await ledger_counts(session, product.product_id) == (0, 9, 1)
    # A user Redis now thinks has nothing still cannot pass the limit the ledger keeps.
    assert await outcome(stock.holds.reserve(product.product_id, new_id(), user_id=100,
                                       quantity=1)) in {"sold_out", "purchase_limit_exceeded",
                                                        "upstream_unavailable"}
    await live.drain()
    await live.reconcile_once()
    assert await redis_counts(redis, product.product_id) == await ledger_counts(
        session, product.product_id)
    assert len(await redis.hgetall(keys.holds)) == 10


async def test_flushed_redis_answers_503_while_rebuilding_then_agrees_with_the_ledger(
    resources: Resources, redis: Redis, session: AsyncSession
) -> None:
    stock, live = resources, resources.live
    product = await make_product(stock.catalog, total=20, limit_per_user=3)
    orders = [new_id() for _ in range(6)]
    for n, order in enumerate(orders):
        await stock.holds.reserve(product.product_id, order, user_id=1 + n % 2, quantity=1)
    await stock.holds.commit(product.product_id, orders[0])
    await stock.holds.release(product.product_id, orders[1])
    before = await ledger_counts(session, product.product_id)

    await redis.flushdb()
    with pytest.raises(StockRebuilding) as raised:
        await stock.holds.reserve(product.product_id, new_id(), user_id=9, quantity=1)
    assert raised.value.headers["Retry-After"] == "1"
    with pytest.raises(StockRebuilding):
        await stock.catalog.public_level(product.product_id)
    await live.drain()  # the 503s asked for a full rebuild: every product, then the epoch
    assert await redis.exists(EPOCH_KEY)

    assert await redis_counts(redis, product.product_id) == before == (15, 4, 1)
    users = await redis.hgetall(ProductKeys.of(product.product_id).users)
    assert users == {"1": "3", "2": "2"}  # user 2's released unit no longer counts
    # The rebuilt state decides as the ledger would: user 2 may take one more, not two.
    assert await outcome(stock.holds.reserve(product.product_id, new_id(), user_id=2,
                                       quantity=2)) == "purchase_limit_exceeded"
    assert await outcome(stock.holds.reserve(product.product_id, new_id(), user_id=2,
                                       quantity=1)) == "held"
    # A replayed reserve of a hold made before the flush finds it, and takes nothing more.
    assert await outcome(stock.holds.reserve(product.product_id, orders[2], user_id=1,
                                       quantity=1)) == "held"
    assert await ledger_counts(session, product.product_id) == (14, 5, 1)


async def test_a_hold_only_redis_took_is_confirmed_on_replay_or_reconciled_away(
    resources: Resources, redis: Redis, session: AsyncSession
) -> None:
    stock, live = resources, resources.live
    product = await make_product(stock.catalog, total=4)
    # As if the service died between the Lua call and the ledger's commit.
    replayed, abandoned = new_id(), new_id()
    await resources.scripts.reserve(product.product_id, replayed, 1, 1)
    await resources.scripts.reserve(product.product_id, abandoned, 2, 1)
    assert await redis_counts(redis, product.product_id) == (2, 2, 0)

    assert await outcome(stock.holds.reserve(product.product_id, replayed, user_id=1,
                                       quantity=1)) == "held"
    assert await ledger_counts(session, product.product_id) == (3, 1, 0)
    # The other is never asked for again: two reconcile rounds that see the same gap drop it.
    assert await live.reconcile_once() == []
    assert await live.reconcile_once() == [product.product_id]
    assert await redis_counts(redis, product.product_id) == (3, 1, 0)


async def test_a_database_that_cannot_confirm_gives_the_units_back(
    resources: Resources, redis: Redis, make_settings: Any
) -> None:
    product = await make_product(resources.catalog, total=2)
    dead = create_engine("mysql+asyncmy://root@127.0.0.1:9/preorder_stock_test", pool_size=1)
    cut_off = stock_parts(resources, sessions=create_sessionmaker(dead))
    try:
        with pytest.raises(DatabaseUnavailable):
            await cut_off.holds.reserve(product.product_id, new_id(), user_id=1, quantity=2)
    finally:
        await dead.dispose()
    assert await redis_counts(redis, product.product_id) == (2, 0, 0)
    assert await outcome(resources.holds.reserve(product.product_id, new_id(), user_id=1,
                                                 quantity=2)) == "held"


async def test_unpaid_holds_past_their_deadline_come_back_by_themselves(
    resources: Resources, redis: Redis, session: AsyncSession
) -> None:
    stock = resources
    product = await make_product(stock.catalog, total=3)
    overdue, current = new_id(), new_id()
    await stock.holds.reserve(product.product_id, overdue, user_id=1, quantity=2,
                        expires_at=utcnow() - timedelta(seconds=1))
    await stock.holds.reserve(product.product_id, current, user_id=2, quantity=1,
                        expires_at=utcnow() + timedelta(minutes=10))
    while await stock.holds.release_expired(grace=timedelta(0)):
        pass
    assert (await stock.holds.get_hold(product.product_id, overdue)).state == "released"
    assert (await stock.holds.get_hold(product.product_id, current)).state == "held"
    assert await ledger_counts(session, product.product_id) == (2, 1, 0)
    assert await redis_counts(redis, product.product_id) == (2, 1, 0)


async def test_a_deleted_product_takes_no_orders_but_its_holds_settle(
    resources: Resources, session: AsyncSession
) -> None:
    stock = resources
    product = await make_product(stock.catalog, total=5)
    order = new_id()
    await stock.holds.reserve(product.product_id, order, user_id=1, quantity=1)
    await stock.catalog.unregister(product.product_id)
    with pytest.raises(ProductNotFound):
        await stock.holds.reserve(product.product_id, new_id(), user_id=2, quantity=1)
    with pytest.raises(ProductNotFound):
        await stock.catalog.public_level(product.product_id)
    assert (await stock.holds.release(product.product_id, order)).state == "released"
    assert await ledger_counts(session, product.product_id) == (5, 0, 0)


async def test_registration_changes_stop_when_the_sale_opens(resources: Resources) -> None:
    stock = resources
    opened = await make_product(stock.catalog, total=5)
    change = StockRegistration(seller_id=1, price=9_000, total=6)
    with pytest.raises(SaleStarted):
        await stock.catalog.register(opened.product_id, change.model_copy(
            update={"sale_opens_at": opened.sale_opens_at}))
    # The price alone may still change (orders keep the price they were made at).
    same_window = change.model_copy(update={"total": 5, "sale_opens_at": opened.sale_opens_at})
    assert (await stock.catalog.register(opened.product_id, same_window)).price == 9_000

    scheduled = await make_product(stock.catalog, total=5, opens_at=utcnow() + timedelta(days=1))
    moved = await stock.catalog.register(scheduled.product_id, change.model_copy(update={
        "sale_opens_at": utcnow() + timedelta(days=2)}))
    assert (moved.total, moved.remaining, moved.sale_state) == (6, 6, "scheduled")
    with pytest.raises(SaleStarted):
        await stock.catalog.set_total(opened.product_id, seller_id=1, total=7)
    assert (await stock.catalog.set_total(scheduled.product_id, seller_id=1, total=8)).remaining == 8


async def test_a_change_that_leaves_the_total_out_keeps_the_one_the_seller_set(
    resources: Resources
) -> None:
    """product_service re-sends a product's registration when its price, window or limit
    change, and does not own the total (the seller sets it here, with PUT .../stock): a total
    it had to send would undo a PUT that landed between its read and its write."""
    stock = resources
    opens_at = utcnow() + timedelta(days=1)
    scheduled = await make_product(stock.catalog, total=5, opens_at=opens_at)
    await stock.catalog.set_total(scheduled.product_id, seller_id=1, total=25)
    change = StockRegistration(seller_id=1, price=9_000).model_copy(
        update={"sale_opens_at": opens_at})
    changed = await stock.catalog.register(scheduled.product_id, change)
    assert (changed.total, changed.remaining, changed.price) == (25, 25, 9_000)


async def test_a_new_registration_needs_its_total(resources: Resources) -> None:
    with pytest.raises(ProblemError) as refused:
        await resources.catalog.register(new_id(), StockRegistration(seller_id=1, price=9_000))
    assert (refused.value.status, refused.value.code) == (422, "validation_error")


async def test_a_sold_out_product_is_refused_from_memory_until_units_come_back(
    resources: Resources, redis: Redis
) -> None:
    stock = stock_parts(resources, sold_out_memory=60.0)
    product = await make_product(stock.catalog, total=1)
    order = new_id()
    await stock.holds.reserve(product.product_id, order, user_id=1, quantity=1)
    with pytest.raises(SoldOut):
        await stock.holds.reserve(product.product_id, new_id(), user_id=2, quantity=1)
    # Without a Lua call: with Redis's state gone, asking Redis would have been a 503.
    meta = ProductKeys.of(product.product_id).meta
    saved = await redis.dump(meta)
    await redis.delete(meta)
    with pytest.raises(SoldOut):
        await stock.holds.reserve(product.product_id, new_id(), user_id=3, quantity=1)
    assert saved is not None
    await redis.restore(meta, 0, saved)
    # A unit given back through this process is buyable at once.
    await stock.holds.release(product.product_id, order)
    assert (await stock.holds.reserve(product.product_id, new_id(), user_id=3, quantity=1)).state \
        == "held"


async def test_the_public_view_is_remembered_briefly_but_opens_on_time(
    resources: Resources, redis: Redis
) -> None:
    stock = stock_parts(resources, view_memory=0.5)
    seconds, micros = await redis.time()
    redis_now = datetime(1970, 1, 1) + timedelta(seconds=int(seconds), microseconds=int(micros))
    product = await make_product(stock.catalog, total=5, opens_at=redis_now + timedelta(milliseconds=200))
    first = await stock.catalog.public_level(product.product_id)
    assert (first.remaining, first.sale_state) == (5, "scheduled")
    await redis.hincrby(ProductKeys.of(product.product_id).meta, "remaining", -2)
    await asyncio.sleep(0.25)
    remembered = await stock.catalog.public_level(product.product_id)
    # Still the remembered count, but the opening came on time by the moving clock.
    assert (remembered.remaining, remembered.sale_state) == (5, "open")
    await asyncio.sleep(0.3)
    assert (await stock.catalog.public_level(product.product_id)).remaining == 3


async def test_a_change_made_through_this_process_is_seen_by_its_next_read(
    resources: Resources
) -> None:
    """The view memory spares Redis reads of a level nobody here changed; a buyer whose order
    just took units (or gave them back) through this process sees the new count at once."""
    stock = stock_parts(resources, view_memory=60)
    product = (await make_product(stock.catalog, total=5)).product_id
    assert (await stock.catalog.public_level(product)).remaining == 5
    first, second = new_id(), new_id()
    await stock.holds.reserve(product, first, user_id=1, quantity=2)
    assert (await stock.catalog.public_level(product)).remaining == 3
    await stock.holds.reserve(product, second, user_id=2, quantity=1)
    await stock.holds.commit(product, first)
    assert (await stock.catalog.public_level(product)).remaining == 2
    await stock.holds.release(product, second)
    assert (await stock.catalog.public_level(product)).remaining == 3
    await stock.catalog.unregister(product)
    with pytest.raises(ProductNotFound):
        await stock.catalog.public_level(product)


async def test_a_view_read_while_this_process_changed_the_product_is_not_remembered(
    resources: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read Redis answered before a hold, its answer handled after it: that view predates
    the hold, and remembering it would show the old count for `view_memory`."""
    stock = stock_parts(resources, view_memory=60)
    product = (await make_product(stock.catalog, total=5)).product_id
    answered, go_on = asyncio.Event(), asyncio.Event()
    real_view = resources.scripts.view

    async def slow_view(product_id: int) -> Any:
        view = await real_view(product_id)
        answered.set()
        await go_on.wait()
        return view

    monkeypatch.setattr(resources.scripts, "view", slow_view)
    reading = asyncio.create_task(stock.catalog.public_level(product))
    await answered.wait()
    monkeypatch.setattr(resources.scripts, "view", real_view)
    await stock.holds.reserve(product, new_id(), user_id=1, quantity=2)
    go_on.set()
    assert (await reading).remaining == 5  # read before the hold
    assert (await stock.catalog.public_level(product)).remaining == 3


async def test_a_rebuild_in_this_process_drops_what_it_remembered_of_the_product(
    resources: Resources
) -> None:
    stock = stock_parts(resources, view_memory=60)
    product = (await make_product(stock.catalog, total=5)).product_id
    assert (await stock.catalog.public_level(product)).remaining == 5
    # Another process sells two: this one still remembers five, as it may for view_memory.
    await resources.holds.reserve(product, new_id(), user_id=1, quantity=2)
    assert (await stock.catalog.public_level(product)).remaining == 5
    assert await stock.live.rebuild(product)
    assert (await stock.catalog.public_level(product)).remaining == 3


async def test_an_order_id_already_holding_another_product_takes_nothing_here(
    resources: Resources, redis: Redis
) -> None:
    first = (await make_product(resources.catalog, total=5)).product_id
    second = (await make_product(resources.catalog, total=5)).product_id
    order = new_id()
    await resources.holds.reserve(first, order, user_id=1, quantity=1)
    with pytest.raises(HoldNotFound):
        await resources.holds.reserve(second, order, user_id=1, quantity=2)
    assert await redis_counts(redis, second) == (5, 0, 0)  # Redis gave the two units back
    assert await redis_counts(redis, first) == (4, 1, 0)


async def test_a_product_missing_from_redis_is_rebuilt_by_the_second_round_that_sees_it(
    resources: Resources, redis: Redis
) -> None:
    """A registration commits the ledger's row, then configures Redis: a reconcile round
    between the two must not start a rebuild (its flag would answer the product's first
    orders 503). A product still missing one round later is rebuilt."""
    product = (await make_product(resources.catalog, total=3)).product_id
    keys = ProductKeys.of(product)
    await redis.delete(*keys.all)  # as seen between the ledger's commit and Redis's configure
    assert product not in await resources.live.reconcile_once()
    assert not await redis.exists(keys.rebuilding)
    assert product in await resources.live.reconcile_once()
    assert await redis_counts(redis, product) == (3, 0, 0)


async def test_held_holds_are_listed_by_their_age_on_redis_clock(resources: Resources) -> None:
    """order_service's orphan check asks for holds at least so old; their created_at is Redis's
    TIME, so their age is too, whatever the caller's clock says."""
    product = (await make_product(resources.catalog, total=3)).product_id
    order = new_id()
    await resources.holds.reserve(product, order, user_id=1, quantity=1)
    await asyncio.sleep(0.01)

    async def listed(older_than: timedelta) -> set[int]:
        seen: set[int] = set()
        after = 0
        while True:
            page = await resources.holds.held_holds(older_than=older_than,
                                                    after_order_id=after, limit=1000)
            seen |= {hold.order_id for hold in page.items}
            if page.next_after is None:
                return seen
            after = page.next_after

    assert order not in await listed(timedelta(seconds=60))
    assert order in await listed(timedelta(0))


async def test_a_batch_the_memory_lets_ask_is_decided_whole_by_the_script(
    resources: Resources
) -> None:
    """The sold-out memory lapsed lets one request ask; in a batch, the others ride the same
    script call rather than being refused by the memory while a unit is left."""
    stock = stock_parts(resources, sold_out_memory=0.2)
    elsewhere = stock_parts(resources)  # another replica, whose release this one does not hear
    product = await make_product(stock.catalog, total=1)
    pid, first = product.product_id, new_id()
    await stock.holds.reserve(pid, first, user_id=1, quantity=1)
    assert await outcome(stock.holds.reserve(pid, new_id(), user_id=2, quantity=1)) == "sold_out"
    await elsewhere.holds.release(pid, first)
    await asyncio.sleep(0.3)  # the memory lapses
    answers = await stock.holds.reserve_many(pid, [
        HoldAsk(order_id=new_id(), user_id=3, quantity=2),
        HoldAsk(order_id=new_id(), user_id=4, quantity=1)])
    assert [answer.code if isinstance(answer, ProblemError) else answer.state
            for answer in answers] == ["sold_out", "held"]
