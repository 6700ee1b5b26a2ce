"""The protocol between product_service and stock_service (products/service.py): a product
change that stock_service does not take leaves nothing behind on either side. Against the real
stock_service where it answers, and a loopback server that fails on purpose where the point is
a failure the real one cannot be made to give (a 5xx, or nothing listening)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from product_service.app import create_app
from product_service.dependencies import Resources
from product_service.products.models import Product
from product_service.products.tasks import settle_pending_products
from product_service.tests.conftest import SettingsFactory
from product_service.tests.helpers import create_product, product_body
from shared.internal.stock import StockRegistration
from shared.testing.apps import RunningApp, running_app
from shared.testing.identity import new_user_id, seller_headers
from shared.testing.net import ThreadedServer, free_port
from shared.testing.problems import assert_problem


@dataclass
class FailingStock:
    """Answers PUT with `put_status` and DELETE with 204, and remembers what it was sent."""

    put_status: int = 500
    calls: list[tuple[str, str]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def product(request: Request) -> Response:
            self.calls.append((request.method, request.url.path))
            if request.method == "DELETE":
                return Response(status_code=204)
            return JSONResponse({"code": "internal_error"}, status_code=self.put_status)

        return Starlette(routes=[Route("/internal/stock/products/{product_id}", product,
                                       methods=["PUT", "GET", "DELETE"])])


@pytest.fixture(scope="module")
def failing_stock() -> Iterator[tuple[FailingStock, str]]:
    stock = FailingStock()
    server = ThreadedServer(stock.app()).start()
    yield stock, server.url
    server.stop()


@pytest.fixture
async def app_with_failing_stock(make_settings: SettingsFactory,
                                 failing_stock: tuple[FailingStock, str]
                                 ) -> AsyncIterator[RunningApp]:
    failing_stock[0].calls.clear()
    settings = make_settings(stock_service_url=failing_stock[1])
    async with running_app(create_app(settings), base_url="http://product") as app:
        yield app


@pytest.fixture
async def app_without_stock(make_settings: SettingsFactory) -> AsyncIterator[RunningApp]:
    # Nothing listens on this port: every call fails at once.
    settings = make_settings(stock_service_url=f"http://127.0.0.1:{free_port()}")
    async with running_app(create_app(settings), base_url="http://product") as app:
        yield app


async def rows_of(session: AsyncSession, seller_id: int) -> list[tuple[int, str]]:
    rows = await session.execute(
        select(Product.id, Product.status).where(Product.seller_id == seller_id))
    await session.commit()
    return [(row.id, row.status) for row in rows]


async def test_a_creation_stock_service_fails_is_503_and_withdrawn_on_both_sides(
    app_with_failing_stock: RunningApp, failing_stock: tuple[FailingStock, str],
    session: AsyncSession
) -> None:
    seller = new_user_id()
    response = await app_with_failing_stock.client.post(
        "/api/v1/products", json=product_body(), headers=seller_headers(seller))
    assert_problem(response, 503, "upstream_unavailable")
    assert response.headers["retry-after"] == "1"
    assert await rows_of(session, seller) == []
    # The registration may have landed before the answer was lost: it was withdrawn.
    methods = [method for method, _ in failing_stock[0].calls]
    assert methods == ["PUT", "DELETE"]
    assert len({path for _, path in failing_stock[0].calls}) == 1


async def test_a_creation_stock_service_refuses_answers_its_problem_and_leaves_no_row(
    client: httpx.AsyncClient, resources: Resources, session: AsyncSession
) -> None:
    seller = new_user_id()
    previous = await create_product(client, seller)
    # The next id was once registered and withdrawn (as an id handed out again after a
    # restore would be): stock_service refuses it.
    next_id = previous["id"] + 1
    await resources.stock.register(next_id, StockRegistration(seller_id=seller, price=1, total=1))
    await resources.stock.unregister(next_id)
    response = await client.post("/api/v1/products", json=product_body(),
                                 headers=seller_headers(seller))
    assert_problem(response, 404, "not_found")
    assert await rows_of(session, seller) == [(previous["id"], "active")]


async def test_a_creation_without_stock_service_is_503_and_never_visible_then_settled(
    app_without_stock: RunningApp, client: httpx.AsyncClient, resources: Resources,
    session: AsyncSession
) -> None:
    seller = new_user_id()
    response = await app_without_stock.client.post(
        "/api/v1/products", json=product_body(), headers=seller_headers(seller))
    assert_problem(response, 503, "upstream_unavailable")
    # Nothing could be withdrawn from stock_service, so the row waits, pending, for the settler.
    [(product_id, status)] = await rows_of(session, seller)
    assert status == "pending"
    assert_problem(await client.get(f"/api/v1/products/{product_id}"), 404, "not_found")
    listed = (await client.get("/api/v1/products", params={"limit": 100})).json()["items"]
    assert product_id not in [item["id"] for item in listed]

    settled = await settle_pending_products(resources.datastores.sessionmaker, resources.stock,
                                            older_than=timedelta(0))
    assert settled >= 1
    assert await rows_of(session, seller) == []
    entry = await resources.stock.entry(product_id)
    assert entry is None or entry.deleted


async def test_a_change_stock_service_fails_is_503_changes_nothing_and_is_put_back(
    client: httpx.AsyncClient, app_with_failing_stock: RunningApp,
    failing_stock: tuple[FailingStock, str]
) -> None:
    seller = new_user_id()
    product = await create_product(client, seller)
    url = f"/api/v1/products/{product['id']}"
    response = await app_with_failing_stock.client.patch(
        url, json={"price": 1, "name": "Cheap"}, headers=seller_headers(seller))
    assert_problem(response, 503, "upstream_unavailable")
    assert (await client.get(url)).json() == product
    # The change, then the registration as it was (the change may have landed).
    assert [method for method, _ in failing_stock[0].calls] == ["PUT", "PUT"]


async def test_a_change_of_name_alone_does_not_ask_stock_service(
    client: httpx.AsyncClient, app_with_failing_stock: RunningApp,
    failing_stock: tuple[FailingStock, str]
) -> None:
    seller = new_user_id()
    product = await create_product(client, seller)
    response = await app_with_failing_stock.client.patch(
        f"/api/v1/products/{product['id']}", json={"name": "Renamed", "description": "new"},
        headers=seller_headers(seller))
    assert response.status_code == 200, response.text
    assert failing_stock[0].calls == []


async def test_a_delete_stock_service_cannot_take_is_503_and_the_product_stays(
    client: httpx.AsyncClient, app_without_stock: RunningApp, resources: Resources
) -> None:
    seller = new_user_id()
    product = await create_product(client, seller)
    url = f"/api/v1/products/{product['id']}"
    response = await app_without_stock.client.delete(url, headers=seller_headers(seller))
    assert_problem(response, 503, "upstream_unavailable")
    assert (await client.get(url)).json() == product
    entry = await resources.stock.entry(product["id"])
    assert entry is not None
    assert not entry.deleted


async def test_concurrent_changes_of_one_product_are_applied_one_at_a_time(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    seller = new_user_id()
    product = await create_product(client, seller)
    url = f"/api/v1/products/{product['id']}"
    prices = list(range(1_000, 1_010))
    answers = await asyncio.gather(*(client.patch(url, json={"price": price},
                                                  headers=seller_headers(seller))
                                     for price in prices))
    assert {answer.status_code for answer in answers} == {200}
    final = (await client.get(url)).json()["price"]
    entry = await resources.stock.entry(product["id"])
    assert entry is not None
    assert entry.price == final
    assert final in prices
