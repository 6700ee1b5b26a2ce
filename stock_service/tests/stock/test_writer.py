"""The hold writer against real MariaDB: holds of one product arriving together are written in
fewer transactions than holds, and a batch the ledger refuses in part still gives every hold its
own answer (the ones at fault refused, the rest written)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.clock import utcnow
from shared.db import Transactions
from shared.internal.stock import Hold
from stock_service.dependencies import Resources
from stock_service.stock.repository import LedgerRepository
from stock_service.stock.writer import (
    AlreadyInLedger,
    HoldWriter,
    LedgerRefused,
    WriterStopped,
    _BatchRefused,
)
from stock_service.tests.conftest import new_id
from stock_service.tests.factories import make_product
from stock_service.tests.stock.test_service import ledger_counts, statements_on


def new_hold(product_id: int, *, user_id: int | None = None, order_id: int | None = None,
             quantity: int = 1) -> Hold:
    now = utcnow().replace(microsecond=0)
    return Hold(order_id=order_id or new_id(), product_id=product_id,
                user_id=user_id or new_id(), quantity=quantity, unit_price=1_000, state="held",
                expires_at=now + timedelta(minutes=10), created_at=now)


async def answer(writer: HoldWriter, hold: Hold) -> str:
    try:
        await writer.write(hold)
    except LedgerRefused as refused:
        return refused.code
    except AlreadyInLedger:
        return "already"
    return "written"


async def test_holds_arriving_together_share_transactions(
    resources: Resources, session: AsyncSession
) -> None:
    product = await make_product(resources.catalog, total=100)
    writer = HoldWriter(Transactions(resources.datastores.sessionmaker, LedgerRepository))
    engine = resources.datastores.engine
    with statements_on(engine) as seen:
        answers = await asyncio.gather(*(answer(writer, new_hold(product.product_id))
                                         for _ in range(60)))
    assert answers == ["written"] * 60
    updates = [s for s in seen if s.startswith("UPDATE stock_products")]
    # All arrived before the first transaction began (or while it ran): a few batches at most.
    assert 1 <= len(updates) < 10
    assert await ledger_counts(session, product.product_id) == (40, 60, 0)
    assert writer._writers == {}
    assert writer._waiting == {}


async def test_a_batch_past_the_ledgers_stock_writes_what_fits_and_refuses_the_rest(
    resources: Resources, session: AsyncSession
) -> None:
    # As if Redis had granted 12 units of 10 (an older snapshot restored, say).
    product = await make_product(resources.catalog, total=10)
    writer = HoldWriter(Transactions(resources.datastores.sessionmaker, LedgerRepository))
    answers = await asyncio.gather(*(answer(writer, new_hold(product.product_id))
                                     for _ in range(12)))
    assert Counter(answers) == {"written": 10, "sold_out": 2}
    assert await ledger_counts(session, product.product_id) == (0, 10, 0)


async def test_a_batch_with_a_user_past_the_limit_refuses_only_that_users_extra_hold(
    resources: Resources, session: AsyncSession
) -> None:
    product = await make_product(resources.catalog, total=10, limit_per_user=2)
    writer = HoldWriter(Transactions(resources.datastores.sessionmaker, LedgerRepository))
    greedy = new_id()
    holds = [new_hold(product.product_id) for _ in range(4)]
    holds += [new_hold(product.product_id, user_id=greedy) for _ in range(3)]
    answers = await asyncio.gather(*(answer(writer, hold) for hold in holds))
    assert answers[:4] == ["written"] * 4
    assert Counter(answers[4:]) == {"written": 2, "purchase_limit_exceeded": 1}
    assert await ledger_counts(session, product.product_id) == (4, 6, 0)


async def test_an_order_already_in_the_ledger_is_told_so_and_its_batch_is_written(
    resources: Resources, session: AsyncSession
) -> None:
    product = await make_product(resources.catalog, total=10)
    writer = HoldWriter(Transactions(resources.datastores.sessionmaker, LedgerRepository))
    first = new_hold(product.product_id)
    assert await answer(writer, first) == "written"
    holds = [new_hold(product.product_id) for _ in range(3)] + [first]
    answers = await asyncio.gather(*(answer(writer, hold) for hold in holds))
    assert answers == ["written"] * 3 + ["already"]
    assert await ledger_counts(session, product.product_id) == (6, 4, 0)


class StallingWriter(HoldWriter):
    """The writer's own bookkeeping under a stop, with its database part replaced: the batch is
    refused as a whole and each hold written alone, the second of them never finishing."""

    def __init__(self) -> None:
        super().__init__(transactions=None)  # type: ignore[arg-type]
        self.alone = 0
        self.stalled = asyncio.Event()

    async def _write_together(self, holds: list[Hold]) -> None:
        raise _BatchRefused()

    async def _write_alone(self, hold: Hold) -> None:
        self.alone += 1
        if self.alone == 2:
            self.stalled.set()
            await asyncio.Event().wait()  # never set: the stop comes first


async def test_a_writer_stopped_in_the_middle_of_a_batch_answers_every_caller() -> None:
    writer = StallingWriter()
    product_id = new_id()
    calls = [asyncio.create_task(answer(writer, new_hold(product_id))) for _ in range(4)]
    await asyncio.wait_for(writer.stalled.wait(), 5)
    writer._writers[product_id].cancel()
    outcomes = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5)
    assert outcomes[0] == "written"
    assert all(isinstance(outcome, WriterStopped) for outcome in outcomes[1:]), outcomes
    assert (writer._writers, writer._waiting) == ({}, {})


class CollidingWriter(HoldWriter):
    """A batch that meets a deadlock (MySQL error 1213), its holds then written alone."""

    def __init__(self) -> None:
        super().__init__(transactions=None)  # type: ignore[arg-type]
        self.alone: list[int] = []

    async def _write_together(self, holds: list[Hold]) -> None:
        raise OperationalError("UPDATE stock_products ...", {}, Exception(1213, "Deadlock"))

    async def _write_alone(self, hold: Hold) -> None:
        self.alone.append(hold.order_id)


async def test_a_batch_cut_short_by_a_deadlock_is_written_hold_by_hold() -> None:
    writer = CollidingWriter()
    product_id = new_id()
    holds = [new_hold(product_id) for _ in range(5)]
    assert await asyncio.gather(*(answer(writer, hold) for hold in holds)) == ["written"] * 5
    assert sorted(writer.alone) == sorted(hold.order_id for hold in holds)
