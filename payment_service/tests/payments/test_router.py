"""Payments over HTTP against the real stock, order and payment processes: the contract's cases,
test cards, Idempotency-Key, and what is (not) kept of a card."""

from __future__ import annotations

import os

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.testing.identity import identity_headers
from shared.testing.problems import assert_problem
from shared.testing.sale import Sale, register_product
from shared.testing.sale_flow import CARD_DECLINED, CARD_OK, order, pay


def user() -> int:
    return int.from_bytes(os.urandom(4), "big") + 1


async def new_order(http: httpx.AsyncClient, sale: Sale, buyer: int, *, quantity: int = 1) -> int:
    product = await register_product(http, sale, total=10, price=15_000)
    response = await order(http, sale, user=buyer, product=product, quantity=quantity)
    assert response.status_code == 201, response.text
    order_id: int = response.json()["id"]
    return order_id


async def test_a_payment_is_the_payers_own_to_read(http: httpx.AsyncClient, sale: Sale) -> None:
    buyer = user()
    order_id = await new_order(http, sale, buyer, quantity=3)
    created = await pay(http, sale, user=buyer, order_id=order_id)
    assert created.status_code == 201
    body = created.json()
    assert set(body) == {"id", "order_id", "amount", "status", "failure_code", "created_at"}
    assert (body["order_id"], body["amount"], body["status"], body["failure_code"]) == (
        order_id, 45_000, "succeeded", None)
    url = sale.url("payment") + f"/api/v1/payments/{body['id']}"
    assert (await http.get(url, headers=identity_headers(buyer))).json() == body
    assert_problem(await http.get(url, headers=identity_headers(user())), 404, "not_found")
    assert_problem(await http.get(sale.url("payment") + "/api/v1/payments/0",
                                  headers=identity_headers(buyer)), 422, "validation_error")


@pytest.mark.parametrize("card", ["4242424242424241", "424242424242424", "42424242424242424",
                                  "4242-4242-4242-42", "", "٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢"])
async def test_a_card_that_is_not_16_valid_digits_is_422_and_charges_nothing(
    http: httpx.AsyncClient, sale: Sale, engines: dict[str, AsyncEngine], card: str
) -> None:
    buyer = user()
    order_id = await new_order(http, sale, buyer)
    refused = await pay(http, sale, user=buyer, order_id=order_id, card=card)
    assert_problem(refused, 422, "validation_error")
    assert card not in refused.text or not card
    async with engines["payment"].connect() as conn:
        count = (await conn.execute(text("SELECT COUNT(*) FROM payments WHERE order_id = :o"),
                                    {"o": order_id})).scalar_one()
    assert count == 0


async def test_only_the_last_four_digits_are_kept(
    http: httpx.AsyncClient, sale: Sale, engines: dict[str, AsyncEngine]
) -> None:
    buyer = user()
    order_id = await new_order(http, sale, buyer)
    await pay(http, sale, user=buyer, order_id=order_id, card=CARD_DECLINED)
    async with engines["payment"].connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM payments WHERE order_id = :o"),
                                   {"o": order_id})).mappings().all()
    assert [row["card_last4"] for row in rows] == ["0002"]
    assert all(CARD_DECLINED not in str(value) for row in rows for value in row.values())
    for log in sale.logs.glob("*.log"):
        assert CARD_DECLINED not in log.read_text()


@pytest.mark.parametrize("card", [CARD_OK, CARD_DECLINED])
async def test_a_payments_answer_is_what_reading_it_later_shows(
    http: httpx.AsyncClient, sale: Sale, card: str
) -> None:
    """The paying request answers the state it wrote without reading it back: the webhook
    that follows and the order's settling change nothing a later read shows."""
    buyer = user()
    order_id = await new_order(http, sale, buyer)
    answered = await pay(http, sale, user=buyer, order_id=order_id, card=card)
    assert answered.status_code == 201, answered.text
    assert answered.json()["status"] == ("succeeded" if card == CARD_OK else "failed")
    url = sale.url("payment") + f"/api/v1/payments/{answered.json()['id']}"
    assert (await http.get(url, headers=identity_headers(buyer))).json() == answered.json()


async def test_a_failed_payment_can_be_followed_by_none_on_its_order(
    http: httpx.AsyncClient, sale: Sale
) -> None:
    buyer = user()
    order_id = await new_order(http, sale, buyer)
    failed = await pay(http, sale, user=buyer, order_id=order_id, card=CARD_DECLINED)
    assert failed.json()["status"] == "failed"
    # The order is payment_failed now: nothing more to pay.
    assert_problem(await pay(http, sale, user=buyer, order_id=order_id), 409, "invalid_state")
    assert_problem(await pay(http, sale, user=buyer, order_id=2**53 - 1), 404, "not_found")


async def test_idempotency_key_replays_the_first_payment(
    http: httpx.AsyncClient, sale: Sale
) -> None:
    buyer = user()
    order_id = await new_order(http, sale, buyer)
    first = await pay(http, sale, user=buyer, order_id=order_id, key="pay-1")
    again = await pay(http, sale, user=buyer, order_id=order_id, key="pay-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert_problem(await pay(http, sale, user=buyer, order_id=order_id, card=CARD_DECLINED,
                             key="pay-1"), 422, "idempotency_key_reused")
    assert_problem(await pay(http, sale, user=buyer, order_id=order_id), 409, "invalid_state")


async def test_unknown_fields_and_no_identity_are_refused(
    http: httpx.AsyncClient, sale: Sale
) -> None:
    url = sale.url("payment") + "/api/v1/payments"
    body = {"order_id": 1, "card_number": CARD_OK}
    assert_problem(await http.post(url, json=body), 401, "missing_token")
    assert_problem(await http.post(url, json={**body, "amount": 1}, headers=identity_headers(user())), 422,
                   "validation_error")
