"""The chaos run's verdict: after the faults and the settle period, do money and stock add up?

Pure functions over one `ChaosState` (order_service's, stock_service's and payment_service's
rows of the product, the processor's own ledger of charges when a simulator ran, the public
stock) and the buyers' recorded attempts. The invariants:

- no_oversell: nothing sold or held beyond the total, nobody past limit_per_user, the public
  stock never negative (loadtests.checker's sold_within_total and within_limit_per_user);
- every_hold_resolved: no hold still held, no order still pending_payment, no payment still
  pending, no effect still owed to stock_service or payment_service, and public remaining +
  sold = total (loadtests.checker's stock_returned, and more);
- records_agree: every order has its hold in the matching state, the ledger is its holds' sum,
  every payment matches its order (loadtests.checker's orders_holds_payments_agree);
- charge_accounted: every succeeded charge belongs to exactly one paid order (the order's
  payment is that charge's payment) or to one refund (payment and order refunded);
- no_paid_order_with_voided_charge: every paid order's payment succeeded, and its charge at the
  processor is succeeded (not voided, refunded, declined or pending);
- no_double_charge: at most one charge kept (succeeded) per order and per payment;
- retry_got_first_answer: for each Idempotency-Key, every answer that was not a lost one (a
  transport error, a 5xx, 409 idempotency_key_in_use, 429, a 202 ticket) is the same (status,
  code, id); and when the key made an order or payment, that answer is it (never a refusal,
  never another one);
- no_server_error: no answer is a 5xx the system does not give on purpose. Allowed are the
  contract's answers to a fault: 503 `upstream_unavailable` (a killed service, Redis or MySQL
  out of reach, a budget that ran out while the work goes on) or `not_ready`, the gateway's 502
  `upstream_unavailable` (a killed service broke the connection mid-request) and its 504
  `upstream_timeout` (a service that did not answer in 10 s: on a starved machine a request can
  queue that long before its handler runs, so it measures capacity, not correctness; the report
  counts them under `answers`). A 500 is always a breach (an unexpected error, whatever its
  code), and so is any other 5xx or code.

Without a processor ledger (`charges is None`) the charges are read from payment_service's own
rows (a succeeded or refunded payment is a charge): weaker, since it trusts the very rows the
invariants are about; the report says which source was used.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
from sqlalchemy import bindparam, text

from loadtests.chaos.buyers import Attempt
from loadtests.checker import (
    HoldRow,
    Ledger,
    OrderRow,
    PaymentRow,
    ReadOnlyConnection,
    SaleState,
    check,
    public_remaining,
)

INVARIANTS = ("no_oversell", "every_hold_resolved", "records_agree", "charge_accounted",
              "no_paid_order_with_voided_charge", "no_double_charge", "retry_got_first_answer",
              "no_server_error")
# The 5xx answers a fault is met with on purpose (see no_server_error above).
DELIBERATE_5XX = frozenset({(503, "upstream_unavailable"), (503, "not_ready"),
                            (502, "upstream_unavailable"), (504, "upstream_timeout")})
# Examples kept per broken invariant (all are counted).
EXAMPLES = 20
KEPT = "succeeded"


@dataclass(frozen=True)
class ChaosOrder:
    id: int
    user_id: int
    quantity: int
    amount: int
    status: str
    payment_id: int | None
    stock_effect: str | None
    payment_effect: str | None
    idempotency_key: str | None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class ChaosPayment:
    id: int
    order_id: int
    user_id: int
    amount: int
    status: str
    failure_code: str | None
    idempotency_key: str | None
    created_at: datetime | None = None


@dataclass(frozen=True)
class ProcessorCharge:
    """One charge in the processor's own ledger (GET /_sim/charges)."""

    id: str
    payment_id: int | None
    order_id: int | None
    amount: int
    status: str  # pending, succeeded, declined, voided, refunded


@dataclass
class ChaosState:
    product_id: int
    ledger: Ledger | None
    orders: list[ChaosOrder]
    holds: list[HoldRow]
    payments: list[ChaosPayment]
    user_units: dict[int, int]
    public_remaining: int | None
    # None: no processor simulator ran; the charges are then the payments' rows.
    charges: list[ProcessorCharge] | None = None

    def orphans_released(self) -> list[HoldRow]:
        """Released holds no order was made for: a process died between the reserve and the
        insert, and the orphan reconciler gave the units back, as it should."""
        orders = {o.id for o in self.orders}
        return [h for h in self.holds if h.state == "released" and h.order_id not in orders]

    def sale_state(self) -> SaleState:
        orphans = {h.order_id for h in self.orphans_released()}
        return SaleState(
            self.product_id, self.ledger,
            [OrderRow(o.id, o.user_id, o.quantity, o.amount, o.status, o.payment_id,
                      o.stock_effect) for o in self.orders],
            [h for h in self.holds if h.order_id not in orphans],
            [PaymentRow(p.id, p.order_id, p.user_id, p.amount, p.status)
             for p in self.payments],
            self.user_units, self.public_remaining)


@dataclass(frozen=True)
class Breach:
    detail: str
    order_id: int | None = None
    # Seconds from the sale's start when the order last changed (to place it among the faults).
    at: float | None = None


@dataclass
class ChaosVerdict:
    breaches: dict[str, list[Breach]] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.breaches

    def breach(self, invariant: str, breach: Breach) -> None:
        self.counts[invariant] += 1
        examples = self.breaches.setdefault(invariant, [])
        if len(examples) < EXAMPLES:
            examples.append(breach)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "broken": sorted(self.breaches), "checked": list(INVARIANTS),
                "breach_counts": dict(self.counts),
                "breaches": {name: [asdict(b) for b in found]
                             for name, found in self.breaches.items()},
                "facts": self.facts}

    def lines(self) -> list[str]:
        out = [f"chaos checker: {'PASS' if self.ok else 'FAIL'} ({len(INVARIANTS)} invariants "
               f"checked, {len(self.breaches)} broken)"]
        for invariant in INVARIANTS:
            found = self.breaches.get(invariant, [])
            out.append(f"  {'BROKEN' if found else 'ok    '} {invariant}"
                       + (f" ({self.counts[invariant]} cases)" if found else ""))
            out += [f"         {b.detail}" for b in found]
        return out


# --- Judging ---------------------------------------------------------------------------------


def judge(state: ChaosState, attempts: Sequence[Attempt], *,
          started_wall: float | None = None,
          after_replay: ChaosState | None = None) -> ChaosVerdict:
    """Every invariant over `state` (read once the system settled). `started_wall`: the sale's
    start as epoch seconds, to place each breach on the run's timeline. `after_replay`: read
    after the replay round, for what each key made (a replay that does new work makes an
    order or payment that `state` cannot know)."""
    verdict = ChaosVerdict()
    orders = {o.id: o for o in state.orders}

    def at(order_id: int | None) -> float | None:
        order = orders.get(order_id) if order_id is not None else None
        if order is None or started_wall is None:
            return None
        moment = order.updated_at or order.created_at
        if moment is None:
            return None
        return round(moment.replace(tzinfo=UTC).timestamp() - started_wall, 2)

    def breach(invariant: str, detail: str, order_id: int | None = None,
               when: float | None = None) -> None:
        verdict.breach(invariant, Breach(detail, order_id,
                                         when if when is not None else at(order_id)))

    _ledger_invariants(state, breach)
    _holds_resolved(state, breach)
    _charges(state, breach)
    _retries(after_replay or state, attempts, breach)
    _server_errors(attempts, breach)
    verdict.facts = _facts(state, attempts)
    return verdict


class _Breacher(Protocol):
    def __call__(self, invariant: str, detail: str, order_id: int | None = None,
                 when: float | None = None) -> None: ...


_ORDER_ID = re.compile(r"order (\d+)")


def _ledger_invariants(state: ChaosState, breach: _Breacher) -> None:
    """loadtests.checker's invariants under this checker's names."""
    base = check(state.sale_state(), after_ttl=True)
    names = {"sold_within_total": "no_oversell", "within_limit_per_user": "no_oversell",
             "stock_returned": "every_hold_resolved",
             "orders_holds_payments_agree": "records_agree"}
    for name, examples in base.breaches.items():
        if name in names:
            for example in examples:
                found = _ORDER_ID.search(example)
                breach(names[name], example, int(found.group(1)) if found else None)


def _holds_resolved(state: ChaosState, breach: _Breacher) -> None:
    for payment in state.payments:
        if payment.status == "pending":
            breach("every_hold_resolved", f"payment {payment.id} of order {payment.order_id} "
                                          "still pending", payment.order_id)
    for order in state.orders:
        if order.payment_effect is not None:
            breach("every_hold_resolved", f"order {order.id} ({order.status}) still owes "
                                          f"payment_service its {order.payment_effect}",
                   order.id)


def _charges_of(state: ChaosState) -> list[ProcessorCharge]:
    if state.charges is not None:
        return state.charges
    # Only what payment_service says: a succeeded or refunded payment was a charge.
    return [ProcessorCharge(f"payment-{p.id}", p.id, p.order_id, p.amount, p.status)
            for p in state.payments if p.status in ("succeeded", "refunded")]


def _charges(state: ChaosState, breach: _Breacher) -> None:
    orders = {o.id: o for o in state.orders}
    payments = {p.id: p for p in state.payments}
    charges = _charges_of(state)

    def order_of(charge: ProcessorCharge) -> int | None:
        if charge.order_id is not None:
            return charge.order_id
        payment = payments.get(charge.payment_id) if charge.payment_id is not None else None
        return payment.order_id if payment else None

    kept_by_order: defaultdict[int, list[str]] = defaultdict(list)
    kept_by_payment: defaultdict[int, list[str]] = defaultdict(list)
    charge_of_payment: defaultdict[int, list[ProcessorCharge]] = defaultdict(list)
    for charge in charges:
        order_id = order_of(charge)
        if charge.payment_id is not None:
            charge_of_payment[charge.payment_id].append(charge)
        if charge.status == KEPT:
            if order_id is not None:
                kept_by_order[order_id].append(charge.id)
            if charge.payment_id is not None:
                kept_by_payment[charge.payment_id].append(charge.id)
            order = orders.get(order_id) if order_id is not None else None
            if order is None or order.status != "paid" or order.payment_id != charge.payment_id:
                found = (f"order {order.id} is {order.status} (payment_id {order.payment_id})"
                         if order else f"order {order_id} unknown")
                breach("charge_accounted", f"charge {charge.id} (payment {charge.payment_id}) "
                                           f"succeeded; {found}", order_id)
        elif charge.status == "refunded":
            order = orders.get(order_id) if order_id is not None else None
            payment = payments.get(charge.payment_id) if charge.payment_id is not None else None
            if order is None or order.status != "refunded" or (
                    payment is not None and payment.status != "refunded"):
                found = f"order {order.id} is {order.status}" if order else "no order"
                breach("charge_accounted", f"charge {charge.id} refunded; {found}, payment "
                                           f"{payment.status if payment else 'unknown'}",
                       order_id)
    for order_id, kept in sorted(kept_by_order.items()):
        if len(kept) > 1:
            breach("no_double_charge", f"order {order_id} has {len(kept)} charges kept: "
                                       f"{sorted(kept)}", order_id)
    for payment_id, kept in sorted(kept_by_payment.items()):
        if len(kept) > 1:
            breach("no_double_charge", f"payment {payment_id} was charged {len(kept)} times: "
                                       f"{sorted(kept)}", payments[payment_id].order_id
                   if payment_id in payments else None)
    for order in state.orders:
        if order.status != "paid":
            continue
        payment = payments.get(order.payment_id) if order.payment_id is not None else None
        if payment is None or payment.status != "succeeded":
            breach("no_paid_order_with_voided_charge",
                   f"order {order.id} is paid by payment {order.payment_id}, which is "
                   f"{payment.status + ' ' + str(payment.failure_code) if payment else 'missing'}",
                   order.id)
            continue
        if state.charges is not None:
            statuses = [c.status for c in charge_of_payment[payment.id]]
            if KEPT not in statuses:
                breach("no_paid_order_with_voided_charge",
                       f"order {order.id} is paid by payment {payment.id}; its charges at the "
                       f"processor: {statuses or 'none'}", order.id)


def _same(a: Attempt, b: Attempt) -> bool:
    return (a.status, a.code, a.resource_id) == (b.status, b.code, b.resource_id)


def _describe(a: Attempt) -> str:
    what = a.code or (f"{a.operation} {a.resource_id} {a.resource_status}"
                      if a.resource_id is not None else "")
    return f"{a.status} {what}".strip()


def _retries(state: ChaosState, attempts: Sequence[Attempt], breach: _Breacher) -> None:
    made: dict[tuple[str, int, str], int] = {}
    for order in state.orders:
        if order.idempotency_key is not None:
            made[("order", order.user_id, order.idempotency_key)] = order.id
    payment_order: dict[int, int] = {}
    for payment in state.payments:
        payment_order[payment.id] = payment.order_id
        if payment.idempotency_key is not None:
            made[("pay", payment.user_id, payment.idempotency_key)] = payment.id
    by_key: defaultdict[tuple[str, int, str], list[Attempt]] = defaultdict(list)
    for attempt in attempts:
        if attempt.key is not None:
            by_key[(attempt.operation, attempt.user_id, attempt.key)].append(attempt)
    for (operation, user_id, key), tries in sorted(by_key.items()):
        tries.sort(key=lambda a: (a.number, a.sent))
        final = [a for a in tries if a.final]
        created = made.get((operation, user_id, key))
        order_id = (created if operation == "order" else
                    payment_order.get(created) if created is not None else None)
        differing = [other for other in final[1:] if not _same(final[0], other)]
        if differing:
            breach("retry_got_first_answer",
                   f"{operation} key {key} (user {user_id}): answers "
                   f"{[_describe(a) + (' (replay)' if a.replay else '') for a in final]}",
                   order_id, differing[0].sent)
            continue
        if not final:
            continue
        first = final[0]
        if created is not None and (first.status != 201 or first.resource_id != created):
            lost = sum(1 for a in tries if not a.final)
            breach("retry_got_first_answer",
                   f"{operation} key {key} (user {user_id}) made {operation} {created}, but "
                   f"the answer after {lost} lost ones was {_describe(first)}", order_id,
                   first.sent)
        elif created is None and first.status == 201:
            breach("retry_got_first_answer",
                   f"{operation} key {key} (user {user_id}) was answered {_describe(first)}, "
                   "but nothing with that key exists", first.resource_id
                   if operation == "order" else None, first.sent)


def _server_errors(attempts: Sequence[Attempt], breach: _Breacher) -> None:
    for attempt in attempts:
        if attempt.status is None or attempt.status < 500:
            continue
        if (attempt.status, attempt.code) not in DELIBERATE_5XX:
            breach("no_server_error",
                   f"{answer_label(attempt)} (user {attempt.user_id}, key {attempt.key}): "
                   "not an answer the system gives on purpose", None, attempt.sent)


def answer_label(attempt: Attempt) -> str:
    """"pay 201", "order 503 upstream_unavailable", "replay order 409 sold_out", ..."""
    return (("replay " if attempt.replay else "") + f"{attempt.operation} "
            + f"{attempt.status if attempt.status is not None else attempt.error}"
            + (f" {attempt.code}" if attempt.code else ""))


def _facts(state: ChaosState, attempts: Sequence[Attempt]) -> dict[str, Any]:
    ledger = state.ledger
    retried = Counter(a.key for a in attempts if a.key is not None)
    return {
        "product_id": state.product_id,
        "ledger": asdict(ledger) if ledger else None,
        "public_remaining": state.public_remaining,
        "orders_by_status": dict(Counter(o.status for o in state.orders)),
        "holds_by_state": dict(Counter(h.state for h in state.holds)),
        "orphan_holds_released": len(state.orphans_released()),
        "payments_by_status": dict(Counter(p.status for p in state.payments)),
        "charges_source": "processor" if state.charges is not None else "payments",
        "charges_by_status": dict(Counter(c.status for c in _charges_of(state))),
        "attempts": len(attempts),
        "keys_retried": sum(1 for n in retried.values() if n > 1),
        "replayed": sum(1 for a in attempts if a.replay),
        "answers": dict(Counter(answer_label(a) for a in attempts)),
    }


# --- Processor ledger ------------------------------------------------------------------------


_PAYMENT_REF = re.compile(r"payment[-:_](\d+)")
_ORDER_REF = re.compile(r"order[-:_](\d+)")


def charges_from_simulator(items: Iterable[Mapping[str, Any]]) -> list[ProcessorCharge]:
    """GET /_sim/charges's items: `payment_id`/`order_id` fields, or both inside `reference`
    ("payment:<id>:order:<id>" or "payment-<id>")."""
    charges = []
    for item in items:
        reference = str(item.get("reference") or "")
        payment = item.get("payment_id")
        order = item.get("order_id")
        if payment is None and (found := _PAYMENT_REF.search(reference)):
            payment = found.group(1)
        if order is None and (found := _ORDER_REF.search(reference)):
            order = found.group(1)
        charges.append(ProcessorCharge(
            str(item.get("id")), int(payment) if payment is not None else None,
            int(order) if order is not None else None, int(item.get("amount") or 0),
            str(item.get("status"))))
    return charges


# --- Reading ---------------------------------------------------------------------------------


async def read_chaos_state(product_id: int, databases: Mapping[str, str], *,
                           host: str | None, simulator: str | None) -> ChaosState:
    """`databases`: the order, stock and payment schemas' URLs; `host`: the gateway (the public
    stock; None: not read); `simulator`: the processor simulator's URL, when one ran."""
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
        orders = [ChaosOrder(*row) for row in await order.execute(text(
            "SELECT id, user_id, quantity, amount, status, payment_id, stock_effect, "
            "payment_effect, idempotency_key, created_at, updated_at FROM orders "
            "WHERE product_id = :p"), {"p": product_id})]
    order_ids = sorted({o.id for o in orders} | {h.order_id for h in holds})
    payments: list[ChaosPayment] = []
    async with ReadOnlyConnection(databases["payment"]) as payment:
        statement = text(
            "SELECT id, order_id, user_id, amount, status, failure_code, idempotency_key, "
            "created_at FROM payments WHERE order_id IN :ids").bindparams(
            bindparam("ids", expanding=True))
        for start in range(0, len(order_ids), 1000):
            payments += [ChaosPayment(*row) for row in await payment.execute(
                statement, {"ids": order_ids[start:start + 1000]})]
    charges = None
    if simulator is not None:
        async with httpx.AsyncClient(base_url=simulator, timeout=30) as client:
            response = await client.get("/_sim/charges")
            response.raise_for_status()
            charges = charges_from_simulator(response.json()["items"])
    ledger = Ledger(*ledger_row) if ledger_row is not None else None
    public = await public_remaining(host, product_id) if host is not None else None
    return ChaosState(product_id, ledger, orders, holds, payments, user_units, public, charges)
