"""The internal batch of reserves (POST .../products/{id}/holds) over the app, against real
MariaDB and Redis: decided in the batch's order, each reserve answered as a PUT of its own would
be, a batch that is not one refused whole and changing nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from httpx import Response
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from shared.http import RESENT_HEADER
from shared.internal.stock import MAX_HOLD_BATCH, holds_path, refusal_code
from shared.testing.apps import RunningApp, running_app
from shared.testing.identity import service_identity_headers
from stock_service.app import create_app
from stock_service.dependencies import Resources
from stock_service.tests.conftest import SettingsFactory, new_id
from stock_service.tests.factories import make_product
from stock_service.tests.stock.test_service import ledger_counts, redis_counts


async def send_batch(service: RunningApp, product_id: int, holds: list[dict[str, Any]], *,
                     resent: bool = False) -> Response:
    headers = service_identity_headers("order_service")
    if resent:
        headers[RESENT_HEADER] = "1"
    return await service.client.post(holds_path(product_id), json={"holds": holds},
                                     headers=headers)


def ask(order_id: int, user_id: int, quantity: int = 1, **more: Any) -> dict[str, Any]:
    return {"order_id": order_id, "user_id": user_id, "quantity": quantity, **more}


def answered(response: Response) -> list[tuple[int, int, str | None]]:
    """(order id, status, code or the hold's state) of each answer, in order."""
    assert response.status_code == 200, response.text
    return [(answer["order_id"], answer["status"],
             answer["code"] if answer["hold"] is None else answer["hold"]["state"])
            for answer in response.json()["answers"]]


async def test_a_batch_is_decided_in_its_order_each_reserve_answered_as_its_own(
    service: RunningApp, resources: Resources, redis: Redis, session: AsyncSession
) -> None:
    product = await make_product(resources.catalog, total=3, price=5_000, limit_per_user=1)
    first, second, third, fourth = new_id(), new_id(), new_id(), new_id()
    response = await send_batch(service, product.product_id, [
        ask(first, user_id=1), ask(second, user_id=1), ask(third, user_id=2, quantity=2),
        ask(fourth, user_id=3, expires_at="2030-01-01T00:00:00Z")])
    # The one unit the limit allows user 1, none for user 1's second order nor for user 2's
    # two units, and one for the fourth.
    assert answered(response) == [(first, 200, "held"), (second, 409, "purchase_limit_exceeded"),
                                  (third, 409, "purchase_limit_exceeded"),
                                  (fourth, 200, "held")]
    held = {answer["order_id"]: answer["hold"] for answer in response.json()["answers"]}
    assert held[first]["unit_price"] == 5_000
    assert held[fourth]["expires_at"] == "2030-01-01T00:00:00Z"
    assert await ledger_counts(session, product.product_id) == (1, 2, 0)
    assert await redis_counts(redis, product.product_id) == (1, 2, 0)

    # Sent again, the first is answered its hold as it was; of two newcomers, the earlier in
    # the batch takes the last unit.
    latecomer = new_id()
    again = await send_batch(service, product.product_id, [
        ask(first, user_id=1), ask(new_id(), user_id=4), ask(latecomer, user_id=5)])
    assert answered(again)[0] == (first, 200, "held")
    assert answered(again)[1][1:] == (200, "held")
    assert answered(again)[2] == (latecomer, 409, "sold_out")
    assert again.json()["answers"][0]["hold"] == held[first]
    assert await ledger_counts(session, product.product_id) == (0, 3, 0)


@pytest.fixture(scope="module")
async def remembering(make_settings: SettingsFactory) -> AsyncIterator[RunningApp]:
    """The app with a sold-out memory that outlasts the test."""
    async with running_app(create_app(make_settings(sold_out_memory_seconds=60))) as app:
        yield app


async def test_a_resent_batch_is_answered_from_what_it_did(
    remembering: RunningApp, resources: Resources, session: AsyncSession
) -> None:
    product = await make_product(resources.catalog, total=1)
    order = new_id()
    assert answered(await send_batch(remembering, product.product_id, [ask(order, user_id=1)])) \
        == [(order, 200, "held")]
    refused = new_id()
    assert answered(await send_batch(remembering, product.product_id,
                                     [ask(refused, user_id=2)])) == [(refused, 409, "sold_out")]
    # Sent again unmarked, the held order is refused by the memory of the sell-out.
    assert answered(await send_batch(remembering, product.product_id, [ask(order, user_id=1)])) \
        == [(order, 409, "sold_out")]
    # Its answer lost, the batch is sent again marked: the held order is answered its hold,
    # the refused one its refusal, and nothing moves.
    again = await send_batch(remembering, product.product_id,
                             [ask(order, user_id=1), ask(refused, user_id=2)], resent=True)
    assert answered(again) == [(order, 200, "held"), (refused, 409, "sold_out")]
    assert await ledger_counts(session, product.product_id) == (0, 1, 0)


async def test_a_batch_that_is_not_one_is_refused_whole(
    service: RunningApp, resources: Resources, session: AsyncSession
) -> None:
    product = await make_product(resources.catalog, total=5)
    order = new_id()
    for holds in ([], [ask(order, user_id=1), ask(order, user_id=2)],
                  [ask(new_id(), user_id=1), ask(new_id(), user_id=2, quantity=0)],
                  [ask(new_id(), user_id=n + 1) for n in range(MAX_HOLD_BATCH + 1)]):
        response = await send_batch(service, product.product_id, holds)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
    assert await ledger_counts(session, product.product_id) == (5, 0, 0)


async def test_a_batch_for_a_product_never_registered_answers_each_not_found(
    service: RunningApp
) -> None:
    orders = [new_id(), new_id()]
    response = await send_batch(service, new_id(), [ask(order, user_id=1) for order in orders])
    assert answered(response) == [(order, 404, "not_found") for order in orders]


async def test_the_batch_route_answers_only_order_service(service: RunningApp) -> None:
    response = await service.client.post(
        holds_path(new_id()), json={"holds": [ask(new_id(), user_id=1)]},
        headers=service_identity_headers("social_service"))
    assert response.status_code == 401


async def test_a_resent_reserve_whose_hold_went_back_unwritten_is_not_an_unknown_product(
    service: RunningApp, resources: Resources, session: AsyncSession
) -> None:
    """Redis granted the hold, the ledger never heard of it (the deciding process died, or its
    write failed), and the units went back. The order's reserve, sent again, finds no hold:
    a 404 whose code order_service read as the product's `not_found`, answering a buyer of a
    product on sale 404 (seen once in a full run of test_replicated_sale)."""
    product = await make_product(resources.catalog, total=2)
    order = new_id()
    assert (await resources.scripts.reserve(product.product_id, order, 1, 1)).word == "held"
    await resources.scripts.release(product.product_id, order)
    response = await send_batch(service, product.product_id, [ask(order, user_id=1)],
                                resent=True)
    [(_, status, code)] = answered(response)
    assert status == 404
    assert refusal_code(code) is None, code
    assert await ledger_counts(session, product.product_id) == (2, 0, 0)
