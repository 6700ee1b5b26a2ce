"""The chaos checker on small hand-made sales: a consistent one passes, and each kind of breach
is named under its invariant (and under no other)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pytest

from loadtests.chaos.buyers import Attempt
from loadtests.chaos.checker import (
    INVARIANTS,
    ChaosOrder,
    ChaosPayment,
    ChaosState,
    ProcessorCharge,
    charges_from_simulator,
    judge,
)
from loadtests.checker import HoldRow, Ledger

PRICE = 1000
HOLD_OF = {"pending_payment": "held", "paid": "committed"}


@dataclass
class Sale:
    """A product of `total` units, limit one per user; `buy` adds one order with its hold and
    payments as the services leave them when all went well."""

    total: int = 5
    orders: list[ChaosOrder] = field(default_factory=list)
    holds: list[HoldRow] = field(default_factory=list)
    payments: list[ChaosPayment] = field(default_factory=list)
    charges: list[ProcessorCharge] | None = None
    attempts: list[Attempt] = field(default_factory=list)
    public_remaining: int | None = None

    def buy(self, order_id: int, status: str, *, payment: str | None = None,
            key: bool = True) -> None:
        user = order_id + 100
        payment_id = order_id + 500 if payment is not None else None
        self.orders.append(ChaosOrder(
            order_id, user, 1, PRICE, status, payment_id if status in ("paid", "refunded")
            else None, None, None, f"k{order_id}" if key else None,
            datetime(2026, 1, 1, 0, 0, order_id, tzinfo=UTC).replace(tzinfo=None)))
        self.holds.append(HoldRow(order_id, user, 1, HOLD_OF.get(status, "released")))
        if payment is not None and payment_id is not None:
            self.payments.append(ChaosPayment(payment_id, order_id, user, PRICE, payment,
                                              "card_declined" if payment == "failed" else None,
                                              f"p{order_id}"))
            if self.charges is not None and payment in ("succeeded", "refunded"):
                self.charges.append(ProcessorCharge(f"ch{payment_id}", payment_id, order_id,
                                                    PRICE, payment))
        if key:
            self.attempts.append(Attempt(0, user, "order", f"k{order_id}", 1, 0.0, 0.01, 201,
                                         resource_id=order_id, resource_status="pending_payment"))
        if key and payment_id is not None:
            self.attempts.append(Attempt(0, user, "pay", f"p{order_id}", 1, 1.0, 0.01, 201,
                                         resource_id=payment_id, resource_status=payment))

    def state(self) -> ChaosState:
        sold = sum(1 for h in self.holds if h.state == "committed")
        held = sum(1 for h in self.holds if h.state == "held")
        remaining = self.total - sold if self.public_remaining is None else self.public_remaining
        units = {h.user_id: 1 for h in self.holds if h.state in ("held", "committed")}
        # Copies: a state read at one moment does not change with the sale afterwards.
        return ChaosState(1, Ledger(self.total, held, sold, 1), list(self.orders),
                          list(self.holds), list(self.payments), units, remaining,
                          None if self.charges is None else list(self.charges))


def consistent(*, processor: bool = False) -> Sale:
    sale = Sale(charges=[] if processor else None)
    sale.buy(1, "paid", payment="succeeded")
    sale.buy(2, "refunded", payment="refunded")
    sale.buy(3, "payment_failed", payment="failed")
    sale.buy(4, "expired")
    sale.buy(5, "cancelled")
    return sale


def broken(sale: Sale) -> list[str]:
    verdict = judge(sale.state(), sale.attempts)
    assert set(verdict.breaches) <= set(INVARIANTS)
    return sorted(verdict.breaches)


@pytest.mark.parametrize("processor", [False, True])
def test_a_consistent_sale_passes(processor: bool) -> None:
    sale = consistent(processor=processor)
    verdict = judge(sale.state(), sale.attempts)
    assert verdict.ok, verdict.lines()
    assert verdict.facts["charges_source"] == ("processor" if processor else "payments")


def test_lost_answers_then_the_first_answer_again_pass() -> None:
    sale = consistent()
    user = 101
    sale.attempts[:0] = [
        Attempt(0, user, "order", "k1", 1, 0.0, 0.1, None, error="ReadTimeout", dropped=True),
        Attempt(0, user, "order", "k1", 2, 0.5, 0.1, 503, code="upstream_unavailable"),
        Attempt(0, user, "order", "k1", 3, 0.9, 0.1, 409, code="idempotency_key_in_use"),
    ]
    sale.attempts.append(Attempt(0, user, "order", "k1", 4, 2.0, 0.1, 201, resource_id=1,
                                 resource_status="paid"))
    assert broken(sale) == []


def test_oversold_units_are_named() -> None:
    sale = consistent()
    for n in range(6, 11):
        sale.buy(n, "paid", payment="succeeded")
    assert broken(sale) == ["no_oversell"]


def test_a_user_past_the_limit_is_named() -> None:
    sale = consistent()
    sale.orders.append(replace(sale.orders[0], id=9, idempotency_key=None))
    sale.holds.append(HoldRow(9, 101, 1, "released"))
    sale.orders[-1] = replace(sale.orders[-1], status="pending_payment", payment_id=None)
    sale.holds[-1] = HoldRow(9, 101, 1, "held")
    assert "no_oversell" in broken(sale)


@pytest.mark.parametrize("leftover", ["held_order", "pending_payment", "owed_refund"])
def test_an_unresolved_hold_or_payment_is_named(leftover: str) -> None:
    sale = consistent()
    if leftover == "held_order":
        sale.buy(6, "pending_payment")
    elif leftover == "pending_payment":
        sale.payments.append(ChaosPayment(900, 4, 104, PRICE, "pending", None, None))
    else:
        sale.orders[1] = replace(sale.orders[1], payment_effect="refund")
    assert "every_hold_resolved" in broken(sale)


def test_an_order_without_its_hold_is_named() -> None:
    sale = consistent()
    sale.holds = [h for h in sale.holds if h.order_id != 4]
    assert broken(sale) == ["records_agree"]


def test_a_succeeded_charge_of_an_order_not_paid_is_named() -> None:
    sale = consistent(processor=True)
    # Defect 1(b) of issue 16: the charge went through, the order expired meanwhile.
    sale.charges = [*(sale.charges or []), ProcessorCharge("late", 504, 4, PRICE, "succeeded")]
    assert broken(sale) == ["charge_accounted"]


def test_a_refunded_charge_whose_order_is_still_paid_is_named() -> None:
    sale = consistent(processor=True)
    assert sale.charges is not None
    sale.charges[0] = replace(sale.charges[0], status="refunded")
    assert "charge_accounted" in broken(sale)
    assert "no_paid_order_with_voided_charge" in broken(sale)


def test_a_paid_order_whose_payment_was_failed_by_the_reaper_is_named() -> None:
    sale = consistent()
    sale.payments[0] = replace(sale.payments[0], status="failed", failure_code="interrupted")
    assert "no_paid_order_with_voided_charge" in broken(sale)


def test_a_paid_order_whose_charge_was_voided_at_the_processor_is_named() -> None:
    sale = consistent(processor=True)
    assert sale.charges is not None
    sale.charges[0] = replace(sale.charges[0], status="voided")
    assert broken(sale) == ["no_paid_order_with_voided_charge"]


def test_two_kept_charges_of_one_order_are_a_double_charge() -> None:
    sale = consistent(processor=True)
    # Defect 1(c): a second payment paid the order and the first one's charge was kept too.
    sale.payments.append(ChaosPayment(777, 1, 101, PRICE, "failed", "interrupted", None))
    sale.charges = [*(sale.charges or []), ProcessorCharge("ch777", 777, 1, PRICE, "succeeded")]
    found = broken(sale)
    assert "no_double_charge" in found
    assert "charge_accounted" in found


def test_one_payment_charged_twice_is_a_double_charge() -> None:
    sale = consistent(processor=True)
    sale.charges = [*(sale.charges or []), ProcessorCharge("again", 501, 1, PRICE, "succeeded")]
    assert "no_double_charge" in broken(sale)


def test_a_retry_refused_after_its_first_attempt_made_the_order_is_named() -> None:
    sale = consistent()
    # Defect 2: the answer was lost, the order exists, the retry is refused by the limit.
    sale.attempts = [a for a in sale.attempts if a.key != "k1"] + [
        Attempt(0, 101, "order", "k1", 1, 0.0, 10.0, None, error="ReadTimeout", dropped=True),
        Attempt(0, 101, "order", "k1", 2, 11.0, 0.1, 409, code="purchase_limit_exceeded")]
    assert broken(sale) == ["retry_got_first_answer"]
    verdict = judge(sale.state(), sale.attempts)
    assert verdict.breaches["retry_got_first_answer"][0].order_id == 1


def test_two_different_answers_to_one_key_are_named() -> None:
    sale = consistent()
    sale.attempts.append(Attempt(0, 103, "pay", "p3", 2, 3.0, 0.1, 409, code="invalid_state"))
    assert broken(sale) == ["retry_got_first_answer"]


def test_a_201_for_a_key_that_made_nothing_is_named() -> None:
    sale = consistent()
    sale.attempts.append(Attempt(0, 199, "order", "ghost", 1, 3.0, 0.1, 201, resource_id=99))
    assert broken(sale) == ["retry_got_first_answer"]


def test_a_breach_is_placed_on_the_timeline() -> None:
    sale = consistent()
    sale.holds = [h for h in sale.holds if h.order_id != 4]
    started = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    verdict = judge(sale.state(), sale.attempts, started_wall=started)
    (found,) = verdict.breaches["records_agree"]
    assert (found.order_id, found.at) == (4, 4.0)


def test_the_simulator_ledger_is_read_from_fields_or_the_reference() -> None:
    charges = charges_from_simulator([
        {"id": "a", "reference": "payment:7:order:3", "amount": 10, "status": "succeeded"},
        {"id": "b", "reference": "x", "payment_id": 8, "order_id": 4, "amount": 10,
         "status": "voided"},
        {"id": "c", "reference": "payment-9", "amount": 10, "status": "refunded"},
    ])
    assert [(c.payment_id, c.order_id, c.status) for c in charges] == [
        (7, 3, "succeeded"), (8, 4, "voided"), (9, None, "refunded")]


def test_a_released_hold_no_order_was_made_for_is_an_orphan_given_back() -> None:
    sale = consistent()
    # The order process died between the reserve and the insert; the reconciler released it.
    sale.holds.append(HoldRow(77, 177, 1, "released"))
    verdict = judge(sale.state(), sale.attempts)
    assert verdict.ok, verdict.lines()
    assert verdict.facts["orphan_holds_released"] == 1


@pytest.mark.parametrize("state", ["held", "committed"])
def test_a_live_hold_no_order_was_made_for_is_named(state: str) -> None:
    sale = consistent()
    sale.holds.append(HoldRow(77, 177, 1, state))
    assert "records_agree" in broken(sale)


def test_a_replay_after_the_sale_that_refuses_a_key_which_made_its_order_is_named() -> None:
    sale = consistent()
    # Redis came back without the stored answer: the replay ran the order again, sold out.
    sale.attempts.append(Attempt(0, 101, "order", "k1", 41, 200.0, 0.1, 409, code="sold_out",
                                 replay=True))
    verdict = judge(sale.state(), sale.attempts)
    assert sorted(verdict.breaches) == ["retry_got_first_answer"]
    assert verdict.facts["replayed"] == 1
    assert verdict.facts["answers"]["replay order 409 sold_out"] == 1


def test_an_order_a_replay_made_is_judged_from_the_state_after_the_replay() -> None:
    sale = consistent()
    # First refused (sold out); the key's answer lost with Redis; the replay made order 9.
    sale.attempts += [
        Attempt(0, 109, "order", "k9", 1, 5.0, 0.1, 409, code="sold_out"),
        Attempt(0, 109, "order", "k9", 41, 300.0, 0.1, 201, resource_id=9, replay=True)]
    settled = sale.state()
    sale.buy(9, "pending_payment")
    sale.attempts.pop()  # buy's own record of an answer: this buyer saw only the two above
    verdict = judge(settled, sale.attempts, after_replay=sale.state())
    # The settled sale is sound; the key gave two answers, the second at the replay.
    assert sorted(verdict.breaches) == ["retry_got_first_answer"]
    (found,) = verdict.breaches["retry_got_first_answer"]
    assert (found.order_id, found.at) == (9, 300.0)
    assert "(replay)" in found.detail


@pytest.mark.parametrize(("status", "code"), [
    (503, "upstream_unavailable"), (503, "not_ready"), (502, "upstream_unavailable"),
    (504, "upstream_timeout")])
def test_the_deliberate_answers_to_a_fault_are_no_breach(status: int, code: str) -> None:
    sale = consistent()
    sale.attempts.insert(0, Attempt(0, 101, "order", "k1", 0, 0.0, 0.1, status, code=code))
    assert broken(sale) == []


@pytest.mark.parametrize(("status", "code"), [
    (500, "internal_error"), (500, None), (500, "upstream_unavailable"), (503, "internal_error"),
    (504, None), (502, None), (501, "not_implemented")])
def test_any_other_5xx_is_a_server_error(status: int, code: str | None) -> None:
    """A 500 always, whatever its code, and any 5xx without the code the system answers a fault
    with."""
    sale = consistent()
    sale.attempts.insert(0, Attempt(0, 101, "order", "k1", 0, 2.5, 0.1, status, code=code))
    assert broken(sale) == ["no_server_error"]
    (found,) = judge(sale.state(), sale.attempts).breaches["no_server_error"]
    assert found.at == 2.5
    assert str(status) in found.detail
