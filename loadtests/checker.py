"""After a sale: does what the system says add up? Reads order_service's, stock_service's and
payment_service's schemas (SELECT only) and the product's public stock, and names every
invariant that broke:

- sold_within_total: nothing sold or held beyond the product's total;
- stock_returned: once the payment TTL has passed, nothing is held any more, every effect owed
  to stock_service was delivered, and remaining + sold = total (the ledger, and the public
  stock that Redis serves);
- orders_holds_payments_agree: every order of the product has its one hold (same user and
  quantity, a state that matches the order's) and every hold not
  released its order (a released one without is an orphan given back); the ledger's held and
  sold are the holds' sums; every payment is for an order of its payer, for its amount; a paid
  order has exactly its one succeeded payment, a payment_failed order a failed one;
- within_limit_per_user: nobody holds or bought more than limit_per_user;
- succeeded_payment_has_paid_order: every succeeded payment's order is paid, by that payment;
- no_5xx: no answer of the run had a 5xx status (from the load run's counts), and no ticket
  was refused with a 5xx problem (a place given up after its retries);

and from the buyers' own records (loadtests/crowd.py), when the run has them:

- every_buyer_answered: every order a buyer sent got a final answer: an order (201, or a ticket
  that turned `ordered`) or a refusal (409, or a ticket that turned `refused`, e.g. sold_out);
- ticket_answered_once: no ticket gave two different final answers (on its stream, its reads
  and the read again afterwards), and no ticket was handed to two buyers;
- fair_line: the winners were served in their arrival order and drawn from the earliest
  arrivals (loadtests/fairness.py: Spearman's rank correlation and the earliest arrivals' share
  of the winners, each at least 0.9, judged from 20 winners up; a winner whose order request a
  fault cut, or whose place the line's records show decided more than once (its deciding
  replica died), is judged by the share only: its answer waits for the fault to be noticed).

    python -m loadtests.checker --product-id 12 [--host URL] [--order-database-url ...]
        [--line-redis-url URL]
        [--outcomes FILE] [--before-ttl]

Without database URLs it reads the services' own settings (ORDER_DATABASE_URL, ...), as the
services would. Exits 1 on any breach.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from loadtests.fairness import MIN_EARLIEST_SHARE, MIN_SPEARMAN, fairness_of
from order_service.orders.scripts import LineKeys

INVARIANTS = ("sold_within_total", "stock_returned", "orders_holds_payments_agree",
              "within_limit_per_user", "succeeded_payment_has_paid_order", "no_5xx",
              "every_buyer_answered", "ticket_answered_once", "fair_line")
# The hold's state each order status must have left (stock_service's word for the same fact).
HOLD_STATE_OF = {"pending_payment": "held", "paid": "committed", "payment_failed": "released",
                 "cancelled": "released", "expired": "released", "refunded": "released"}
LIVE = ("pending_payment", "paid")
# Examples kept per broken invariant: enough to find the rows, not a dump of them.
EXAMPLES = 10


@dataclass(frozen=True)
class Ledger:
    total: int
    held: int
    sold: int
    limit_per_user: int | None


@dataclass(frozen=True)
class OrderRow:
    id: int
    user_id: int
    quantity: int
    amount: int
    status: str
    payment_id: int | None
    stock_effect: str | None


@dataclass(frozen=True)
class HoldRow:
    order_id: int
    user_id: int
    quantity: int
    state: str


@dataclass(frozen=True)
class PaymentRow:
    id: int
    order_id: int
    user_id: int
    amount: int
    status: str


@dataclass
class SaleState:
    """What the services hold about one product, read at one moment (each schema in its own
    consistent snapshot)."""

    product_id: int
    ledger: Ledger | None
    orders: list[OrderRow]
    holds: list[HoldRow]
    payments: list[PaymentRow]
    user_units: dict[int, int]
    # GET /products/{id}/stock's remaining (Redis); None when not asked.
    public_remaining: int | None = None
    # Tickets of the product's line whose place was decided more than once (the line's records
    # in Redis); empty when not asked.
    decided_again: frozenset[str] = frozenset()
    # Each ticket's arrival stamp, as the gateway put it on the request (microseconds).
    stamps: Mapping[str, int] = field(default_factory=dict)


@dataclass
class Verdict:
    breaches: dict[str, list[str]] = field(default_factory=dict)
    checked: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.breaches

    def breach(self, invariant: str, example: str) -> None:
        examples = self.breaches.setdefault(invariant, [])
        if len(examples) < EXAMPLES:
            examples.append(example)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "broken": sorted(self.breaches), **asdict(self)}

    def lines(self) -> list[str]:
        out = [f"checker: {'PASS' if self.ok else 'FAIL'} ({len(self.checked)} invariants "
               f"checked, {len(self.breaches)} broken)"]
        for invariant in self.checked:
            examples = self.breaches.get(invariant)
            out.append(f"  {'BROKEN' if examples else 'ok    '} {invariant}")
            out += [f"         {example}" for example in examples or ()]
        return out


# --- Reading ---------------------------------------------------------------------------------


async def read_state(product_id: int, databases: Mapping[str, str], *,
                     host: str | None = None, line_redis_url: str | None = None) -> SaleState:
    """`databases`: the order, stock and payment schemas' URLs. `host`: the gateway, for the
    public stock. `line_redis_url`: order_service's Redis, for the line's records."""
    async with ReadOnlyConnection(databases["stock"]) as stock:
        ledger_row = (await stock.execute(text(
            "SELECT total, held, sold, limit_per_user FROM stock_products "
            "WHERE product_id = :p"), {"p": product_id})).first()
        holds = [HoldRow(*row) for row in await stock.execute(text(
            "SELECT order_id, user_id, quantity, state FROM stock_holds "
            "WHERE product_id = :p"), {"p": product_id})]
        user_units = {int(u): int(n) for u, n in await stock.execute(text(
            "SELECT user_id, units FROM stock_user_counts WHERE product_id = :p"),
            {"p": product_id})}
    async with ReadOnlyConnection(databases["order"]) as order:
        orders = [OrderRow(*row) for row in await order.execute(text(
            "SELECT id, user_id, quantity, amount, status, payment_id, stock_effect "
            "FROM orders WHERE product_id = :p"), {"p": product_id})]
    order_ids = [o.id for o in orders] + [h.order_id for h in holds]
    payments: list[PaymentRow] = []
    async with ReadOnlyConnection(databases["payment"]) as payment:
        statement = text("SELECT id, order_id, user_id, amount, status FROM payments "
                         "WHERE order_id IN :ids").bindparams(bindparam("ids", expanding=True))
        for chunk in _chunks(sorted(set(order_ids)), 1000):
            payments += [PaymentRow(*row) for row in await payment.execute(
                statement, {"ids": chunk})]
    ledger = Ledger(*ledger_row) if ledger_row is not None else None
    public = await public_remaining(host, product_id) if host else None
    records = await line_records(line_redis_url, product_id) if line_redis_url else {}
    again = frozenset(ticket for ticket, record in records.items()
                      if int(record.get("n") or 0) > 1)
    stamps = {ticket: int(record["a"]) for ticket, record in records.items()
              if str(record.get("a") or "").isdigit()}
    return SaleState(product_id, ledger, orders, holds, payments, user_units, public, again,
                     stamps)


class ReadOnlyConnection:
    """One read-only connection on its own engine: the checker keeps no pool."""

    def __init__(self, url: str) -> None:
        self.engine = create_async_engine(url, poolclass=NullPool)

    async def __aenter__(self) -> AsyncConnection:
        self.connection = await self.engine.connect()
        # A guard (nothing the checker sends can write), before the first read opens the one
        # transaction, and so the one snapshot, all its reads share (REPEATABLE READ).
        await self.connection.execute(text("SET SESSION TRANSACTION READ ONLY"))
        return self.connection

    async def __aexit__(self, *_: object) -> None:
        await self.connection.rollback()
        await self.connection.close()
        await self.engine.dispose()


def _chunks(items: Sequence[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


async def line_records(redis_url: str, product_id: int) -> dict[str, dict[str, Any]]:
    """The line's record of each ticket (order_service/orders/scripts.py Record): its decision
    count `n` (a place decided more than once: `decided_again`) and its arrival stamp `a`.
    Read, never written."""
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        records = await client.hgetall(LineKeys.of(product_id).tickets)
    finally:
        await client.aclose()
    return {str(ticket): json.loads(raw) for ticket, raw in records.items()}


async def public_remaining(host: str, product_id: int) -> int | None:
    async with httpx.AsyncClient(base_url=host, timeout=10) as client:
        response = await client.get(f"/api/v1/products/{product_id}/stock")
    return int(response.json()["remaining"]) if response.status_code == 200 else None


# --- Judging ---------------------------------------------------------------------------------


def check(state: SaleState, *, after_ttl: bool = True,
          answers: Mapping[int, int] | None = None,
          buyers: Sequence[Mapping[str, Any]] | None = None) -> Verdict:
    """Every invariant over `state`; `answers` counts the run's answers by status (no_5xx is
    checked when given), `buyers` are the crowd's records (the buyers' invariants are checked
    when given). Before the TTL has passed, holds may still be live: stock_returned is not
    checked then."""
    verdict = Verdict()
    verdict.facts = _facts(state)
    if state.ledger is None:
        verdict.checked.append("sold_within_total")
        verdict.breach("sold_within_total", f"product {state.product_id} has no stock ledger row")
        return verdict
    _sold_within_total(state, state.ledger, verdict)
    if after_ttl:
        _stock_returned(state, state.ledger, verdict)
    _orders_holds_payments_agree(state, state.ledger, verdict)
    _within_limit_per_user(state, state.ledger, verdict)
    _succeeded_payment_has_paid_order(state, verdict)
    if answers is not None:
        verdict.checked.append("no_5xx")
        for status, count in sorted(answers.items()):
            if status >= 500:
                verdict.breach("no_5xx", f"{count} answers with status {status}")
    if answers is not None and buyers is not None:
        refused = Counter(f"{tap.get('final_status')} {tap.get('final_code')}"
                          for buyer in buyers for tap in buyer.get("taps") or ()
                          if int(tap.get("final_status") or 0) >= 500)
        for problem, count in sorted(refused.items()):
            verdict.breach("no_5xx", f"{count} tickets refused with {problem}")
    if buyers is not None:
        _every_buyer_answered(buyers, verdict)
        _ticket_answered_once(buyers, verdict)
        _fair_line(buyers, verdict, state.decided_again)
    return verdict


def _facts(state: SaleState) -> dict[str, Any]:
    ledger = state.ledger
    return {
        "product_id": state.product_id,
        "ledger": asdict(ledger) if ledger else None,
        "public_remaining": state.public_remaining,
        "orders_by_status": dict(Counter(o.status for o in state.orders)),
        "holds_by_state": dict(Counter(h.state for h in state.holds)),
        "payments_by_status": dict(Counter(p.status for p in state.payments)),
    }


def _sold_within_total(state: SaleState, ledger: Ledger, verdict: Verdict) -> None:
    verdict.checked.append("sold_within_total")
    if ledger.sold + ledger.held > ledger.total or min(ledger.sold, ledger.held) < 0:
        verdict.breach("sold_within_total", f"ledger: total {ledger.total}, held {ledger.held}, "
                                            f"sold {ledger.sold}")
    paid = sum(o.quantity for o in state.orders if o.status == "paid")
    if paid > ledger.total:
        verdict.breach("sold_within_total", f"{paid} units in paid orders, total {ledger.total}")
    if state.public_remaining is not None and state.public_remaining < 0:
        verdict.breach("sold_within_total", f"public stock remaining {state.public_remaining}")


def _stock_returned(state: SaleState, ledger: Ledger, verdict: Verdict) -> None:
    verdict.checked.append("stock_returned")
    if ledger.held:
        verdict.breach("stock_returned", f"ledger still holds {ledger.held} after the TTL")
    for order in state.orders:
        if order.status == "pending_payment":
            verdict.breach("stock_returned", f"order {order.id} still pending_payment after the TTL")
        if order.stock_effect is not None:
            verdict.breach("stock_returned", f"order {order.id} ({order.status}) still owes "
                                             f"stock_service its {order.stock_effect}")
    if state.public_remaining is not None and state.public_remaining + ledger.sold != ledger.total:
        verdict.breach("stock_returned", f"public remaining {state.public_remaining} + sold "
                                         f"{ledger.sold} != total {ledger.total}")


def _orders_holds_payments_agree(state: SaleState, ledger: Ledger, verdict: Verdict) -> None:
    name = "orders_holds_payments_agree"
    verdict.checked.append(name)
    holds = {h.order_id: h for h in state.holds}
    orders = {o.id: o for o in state.orders}
    for order in state.orders:
        hold = holds.get(order.id)
        if hold is None:
            verdict.breach(name, f"order {order.id} ({order.status}) has no hold")
            continue
        if (hold.user_id, hold.quantity) != (order.user_id, order.quantity):
            verdict.breach(name, f"order {order.id} is user {order.user_id} x{order.quantity}, "
                                 f"its hold user {hold.user_id} x{hold.quantity}")
        # An effect still owed means the hold is allowed to lag the order, until it lands.
        if order.stock_effect is None and hold.state != HOLD_STATE_OF[order.status]:
            verdict.breach(name, f"order {order.id} is {order.status}, its hold {hold.state}")
    for hold in state.holds:
        # A released one is an orphan given back: its order_service died (or failed) between
        # the hold and the order's insert, and the orphan reconciler returned the unit.
        if hold.order_id not in orders and hold.state != "released":
            verdict.breach(name, f"hold of order {hold.order_id} ({hold.state}) has no order")
    held = sum(h.quantity for h in state.holds if h.state == "held")
    sold = sum(h.quantity for h in state.holds if h.state == "committed")
    if (held, sold) != (ledger.held, ledger.sold):
        verdict.breach(name, f"ledger held {ledger.held} sold {ledger.sold}, its holds say "
                             f"held {held} sold {sold}")
    by_order: defaultdict[int, list[PaymentRow]] = defaultdict(list)
    for payment in state.payments:
        by_order[payment.order_id].append(payment)
        charged = orders.get(payment.order_id)
        if charged is None:
            verdict.breach(name, f"payment {payment.id} is for order {payment.order_id}, "
                                 "which does not exist")
        elif (payment.user_id, payment.amount) != (charged.user_id, charged.amount):
            verdict.breach(name, f"payment {payment.id} is user {payment.user_id} for "
                                 f"{payment.amount}, its order {charged.id} user "
                                 f"{charged.user_id} for {charged.amount}")
    for order in state.orders:
        succeeded = [p.id for p in by_order[order.id] if p.status == "succeeded"]
        if order.status == "paid" and succeeded != [order.payment_id]:
            verdict.breach(name, f"paid order {order.id} (payment_id {order.payment_id}) has "
                                 f"succeeded payments {succeeded}")
        if order.status == "payment_failed" and (
                succeeded or not any(p.status == "failed" for p in by_order[order.id])):
            verdict.breach(name, f"order {order.id} is payment_failed without one failed "
                                 f"payment (succeeded: {succeeded})")


def _within_limit_per_user(state: SaleState, ledger: Ledger, verdict: Verdict) -> None:
    verdict.checked.append("within_limit_per_user")
    limit = ledger.limit_per_user
    if limit is None:
        return
    live: Counter[int] = Counter()
    for order in state.orders:
        if order.status in LIVE:
            live[order.user_id] += order.quantity
    for user, units in sorted(live.items()):
        if units > limit:
            verdict.breach("within_limit_per_user", f"user {user} has {units} units in live "
                                                    f"orders, limit {limit}")
    for user, units in sorted(state.user_units.items()):
        if units > limit:
            verdict.breach("within_limit_per_user", f"stock_service counts {units} units for "
                                                    f"user {user}, limit {limit}")


def _succeeded_payment_has_paid_order(state: SaleState, verdict: Verdict) -> None:
    name = "succeeded_payment_has_paid_order"
    verdict.checked.append(name)
    orders = {o.id: o for o in state.orders}
    for payment in state.payments:
        if payment.status != "succeeded":
            continue
        order = orders.get(payment.order_id)
        if order is None or order.status != "paid" or order.payment_id != payment.id:
            found = f"{order.status}, payment_id {order.payment_id}" if order else "missing"
            verdict.breach(name, f"payment {payment.id} succeeded; order {payment.order_id}: "
                                 f"{found}")


def _every_buyer_answered(buyers: Sequence[Mapping[str, Any]], verdict: Verdict) -> None:
    name = "every_buyer_answered"
    verdict.checked.append(name)
    for buyer in buyers:
        who = f"buyer {buyer['index']} (user {buyer['user_id']})"
        taps = buyer.get("taps") or []
        if not taps:
            verdict.breach(name, f"{who} never sent its order: {buyer.get('error') or '?'}")
        for tap in taps:
            if tap.get("state") not in ("ordered", "refused"):
                first = f"{tap.get('status')} {tap.get('code') or ''}".strip()
                ticket = f", ticket {tap['ticket']} never final" if tap.get("ticket") else ""
                verdict.breach(name, f"{who}: answered {first}{ticket}, no final answer")


def _ticket_answered_once(buyers: Sequence[Mapping[str, Any]], verdict: Verdict) -> None:
    name = "ticket_answered_once"
    verdict.checked.append(name)
    finals: defaultdict[str, set[str]] = defaultdict(set)
    holders: defaultdict[str, set[int]] = defaultdict(set)
    for buyer in buyers:
        for tap in buyer.get("taps") or ():
            if tap.get("ticket"):
                finals[tap["ticket"]].update(tap.get("finals") or ())
                holders[tap["ticket"]].add(int(buyer["user_id"]))
    for ticket, answers in sorted(finals.items()):
        if len(answers) > 1:
            verdict.breach(name, f"ticket {ticket} answered {' and '.join(sorted(answers))}")
        if len(holders[ticket]) > 1:
            verdict.breach(name, f"ticket {ticket} handed to users {sorted(holders[ticket])}")


def _fair_line(buyers: Sequence[Mapping[str, Any]], verdict: Verdict,
               decided_again: frozenset[str]) -> None:
    name = "fair_line"
    verdict.checked.append(name)
    fair = fairness_of(buyers, decided_again)
    verdict.facts["fairness"] = fair.as_dict()
    if not fair.judged:
        return
    if not fair.spearman >= MIN_SPEARMAN:  # NaN (no spread) is no evidence of fairness
        excused = fair.cut_by_faults + fair.decided_again
        verdict.breach(name, f"winners served out of arrival order: Spearman {fair.spearman:.3f}"
                             f" over {fair.granted - excused} winners "
                             f"(at least {MIN_SPEARMAN}; {fair.cut_by_faults} more whose order "
                             f"request a fault cut and {fair.decided_again} whose place was "
                             "decided again are judged by earliest arrivals only)")
    if not fair.earliest_share >= MIN_EARLIEST_SHARE:
        verdict.breach(name, f"of the first {fair.granted} arrivals only "
                             f"{fair.earliest_share:.1%} won (at least {MIN_EARLIEST_SHARE:.0%})")


# --- Command ---------------------------------------------------------------------------------


def answers_by_status(outcomes: Mapping[str, Any]) -> dict[int, int]:
    """Statuses of a load run's answers (loadtests/locustfile.py's outcomes file)."""
    statuses: Counter[int] = Counter()
    for _route, status, _code, count in outcomes.get("counts", ()):
        statuses[int(status)] += int(count)
    for record in outcomes.get("records", ()):
        statuses[int(record[1])] += 1
    return dict(statuses)


def line_redis_url() -> str:
    """order_service's Redis as its own settings read it from the environment."""
    from order_service.settings import get_settings as order_settings

    return order_settings().redis_url


def service_databases() -> dict[str, str]:
    """The schemas' URLs as the services' own settings read them from the environment."""
    from order_service.settings import get_settings as order_settings
    from payment_service.settings import get_settings as payment_settings
    from stock_service.settings import get_settings as stock_settings

    return {"order": order_settings().database_url, "stock": stock_settings().database_url,
            "payment": payment_settings().database_url}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--product-id", type=int, required=True)
    parser.add_argument("--host", default=None, help="the gateway, for the public stock")
    for name in ("order", "stock", "payment"):
        parser.add_argument(f"--{name}-database-url", default=None)
    parser.add_argument("--outcomes", type=Path, default=None,
                        help="the load run's outcomes file (for no_5xx and the buyers' "
                             "invariants)")
    parser.add_argument("--before-ttl", action="store_true",
                        help="holds may still be live: skip stock_returned")
    parser.add_argument("--line-redis-url", default=None,
                        help="order_service's Redis, for the line's records (default: its "
                             "settings' ORDER_REDIS_URL)")
    args = parser.parse_args()
    databases = service_databases()
    for name in databases:
        databases[name] = getattr(args, f"{name}_database_url") or databases[name]
    state = asyncio.run(read_state(args.product_id, databases, host=args.host,
                                   line_redis_url=args.line_redis_url or line_redis_url()))
    outcomes = json.loads(args.outcomes.read_text()) if args.outcomes else None
    verdict = check(state, after_ttl=not args.before_ttl,
                    answers=answers_by_status(outcomes) if outcomes is not None else None,
                    buyers=outcomes.get("buyers") if outcomes is not None else None)
    print("\n".join(verdict.lines()))
    sys.exit(0 if verdict.ok else 1)


if __name__ == "__main__":
    main()
