"""Every case of API.md's "Products and stock" through the real gateway, with product_service
registering each product with the real stock_service over its internal API; all of it uvicorn
processes on loopback with real MariaDB and Redis."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gateway.tests.e2e import System, User, new_seller, new_user
from shared.testing.problems import assert_problem

MAX_ID = 2**53 - 1
PRODUCT_FIELDS = {"id", "seller_id", "name", "description", "price", "kind", "sale_opens_at",
                  "sale_closes_at", "limit_per_user", "sale_state", "created_at", "updated_at"}


@pytest.fixture(scope="module")
async def people(system: System) -> list[User]:
    """Two sellers and a user without the role, signed up once for the module."""
    async with httpx.AsyncClient(base_url=system.gateway.url, timeout=15) as api:
        return list(await asyncio.gather(new_seller(api, system), new_seller(api, system),
                                         new_user(api, system)))


def in_(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat().replace("+00:00", "Z")


def body(**fields: Any) -> dict[str, Any]:
    product: dict[str, Any] = {"name": "Limited sneakers", "description": "Pair no. 1 of 100",
                               "price": 189_000, "stock": 100, "kind": "preorder",
                               "sale_opens_at": in_(days=1), "sale_closes_at": in_(days=2),
                               "limit_per_user": 2}
    product.update(fields)
    return product


async def create(api: httpx.AsyncClient, user: User, **fields: Any) -> dict[str, Any]:
    response = await api.post("/api/v1/products", json=body(**fields), headers=user.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_only_a_seller_lists_a_product_and_a_forged_role_header_is_dropped(
    api: httpx.AsyncClient, people: list[User]
) -> None:
    """The attack: a buyer lists a product, with and without claiming the role in a header."""
    buyer = people[2]
    assert_problem(await api.post("/api/v1/products", json=body(), headers=buyer.headers),
                   403, "forbidden")
    forged = {**buyer.headers, "X-User-Roles": "seller"}
    assert_problem(await api.post("/api/v1/products", json=body(), headers=forged),
                   403, "forbidden")


async def test_a_product_is_created_by_a_seller_and_read_by_anyone(
    api: httpx.AsyncClient, people: list[User]
) -> None:
    seller = people[0]
    created = await create(api, seller)
    assert set(created) == PRODUCT_FIELDS
    assert (created["seller_id"], created["kind"], created["price"], created["limit_per_user"],
            created["sale_state"]) == (seller.id, "preorder", 189_000, 2, "scheduled")
    assert created["created_at"].endswith("Z")
    assert 0 < created["id"] <= MAX_ID
    # Public: no token needed to read it or its stock.
    fetched = await api.get(f"/api/v1/products/{created['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == created
    stock = await api.get(f"/api/v1/products/{created['id']}/stock")
    assert stock.status_code == 200
    assert stock.json() == {"product_id": created["id"], "remaining": 100,
                            "sale_state": "scheduled"}

    general = await create(api, seller, kind="general", sale_opens_at=None, sale_closes_at=None)
    assert general["sale_state"] == "open"
    assert (await api.get(f"/api/v1/products/{general['id']}/stock")).json()["sale_state"] == "open"


async def test_creating_needs_a_token_and_valid_input(
    api: httpx.AsyncClient, people: list[User]
) -> None:
    assert_problem(await api.post("/api/v1/products", json=body()), 401, "missing_token")
    for bad in (body(kind="preorder", sale_opens_at=None), body(stock=-1), body(price=-1),
                body(sale_opens_at="2030-01-01T00:00:00"), body(sale_closes_at=in_(hours=1)),
                body(limit_per_user=0), body(price=2**53), body(surprise=True),
                {"name": "only a name"}):
        assert_problem(await api.post("/api/v1/products", json=bad, headers=people[0].headers),
                       422, "validation_error")


async def test_unknown_products_are_404_and_bad_ids_422(api: httpx.AsyncClient) -> None:
    assert_problem(await api.get(f"/api/v1/products/{MAX_ID}"), 404, "not_found")
    assert_problem(await api.get(f"/api/v1/products/{MAX_ID}/stock"), 404, "not_found")
    assert_problem(await api.get("/api/v1/products/0"), 422, "validation_error")
    assert_problem(await api.get(f"/api/v1/products/{2**53}/stock"), 422, "validation_error")


async def test_the_list_is_newest_first_by_kind_in_pages(
    api: httpx.AsyncClient, people: list[User]
) -> None:
    seller = people[1]
    made = [await create(api, seller, name=f"n{n}",
                         **({"kind": "general", "sale_opens_at": None} if n % 2 else {}))
            for n in range(5)]
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = await api.get("/api/v1/products", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "next_cursor"}
        assert len(page["items"]) <= 2
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    ours = [item["id"] for item in items if item["seller_id"] == seller.id]
    assert ours == [product["id"] for product in reversed(made)]
    assert len({item["id"] for item in items}) == len(items)

    generals = (await api.get("/api/v1/products", params={"kind": "general", "limit": 100})).json()
    assert {item["kind"] for item in generals["items"]} == {"general"}
    assert [item["id"] for item in generals["items"] if item["seller_id"] == seller.id] == [
        product["id"] for product in reversed(made) if product["kind"] == "general"]
    for bad in ({"limit": 0}, {"limit": 101}, {"kind": "auction"}, {"cursor": "garbage"}):
        assert_problem(await api.get("/api/v1/products", params=bad), 422, "validation_error")


async def test_only_the_seller_changes_a_product_and_not_its_window_once_open(
    api: httpx.AsyncClient, people: list[User]
) -> None:
    seller, stranger = people[0], people[2]
    product = await create(api, seller)
    url = f"/api/v1/products/{product['id']}"
    assert_problem(await api.patch(url, json={"price": 1}, headers=stranger.headers), 403,
                   "forbidden")
    assert_problem(await api.patch(url, json={"price": 1}), 401, "missing_token")
    assert_problem(await api.patch(f"/api/v1/products/{MAX_ID}", json={"price": 1},
                                   headers=seller.headers), 404, "not_found")
    changed = await api.patch(url, json={"name": "Renamed", "price": 150_000,
                                         "sale_opens_at": in_(hours=12)}, headers=seller.headers)
    assert changed.status_code == 200, changed.text
    assert (changed.json()["name"], changed.json()["price"]) == ("Renamed", 150_000)
    assert (await api.get(url)).json() == changed.json()

    opened = await create(api, seller, sale_opens_at=in_(seconds=-5))
    opened_url = f"/api/v1/products/{opened['id']}"
    assert opened["sale_state"] == "open"
    for change in ({"sale_opens_at": in_(days=1)}, {"sale_closes_at": in_(days=5)},
                   {"limit_per_user": 10}, {"price": 1}):
        assert_problem(await api.patch(opened_url, json=change, headers=seller.headers), 409,
                       "invalid_state")
    assert (await api.get(opened_url)).json() == opened


async def test_the_seller_sets_the_stock_before_the_sale_opens_only(
    api: httpx.AsyncClient, people: list[User]
) -> None:
    seller, stranger = people[0], people[2]
    product = await create(api, seller)
    stock_url = f"/api/v1/products/{product['id']}/stock"
    response = await api.put(stock_url, json={"stock": 250}, headers=seller.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"product_id": product["id"], "remaining": 250,
                               "sale_state": "scheduled"}
    assert (await api.get(stock_url)).json()["remaining"] == 250
    assert_problem(await api.put(stock_url, json={"stock": 1}, headers=stranger.headers), 403,
                   "forbidden")
    assert_problem(await api.put(stock_url, json={"stock": 1}), 401, "missing_token")
    assert_problem(await api.put(stock_url, json={"stock": -1}, headers=seller.headers), 422,
                   "validation_error")
    # A change of the product afterwards keeps the total the seller set.
    await api.patch(f"/api/v1/products/{product['id']}", json={"price": 1},
                    headers=seller.headers)
    assert (await api.get(stock_url)).json()["remaining"] == 250

    opened = await create(api, seller, sale_opens_at=in_(seconds=-5))
    assert_problem(await api.put(f"/api/v1/products/{opened['id']}/stock", json={"stock": 5},
                                 headers=seller.headers), 409, "invalid_state")
    general = await create(api, seller, kind="general", sale_opens_at=None)
    assert_problem(await api.put(f"/api/v1/products/{general['id']}/stock", json={"stock": 5},
                                 headers=seller.headers), 409, "invalid_state")


async def test_a_deleted_product_is_gone_with_its_stock(
    api: httpx.AsyncClient, people: list[User]
) -> None:
    seller, stranger = people[0], people[2]
    product = await create(api, seller)
    url = f"/api/v1/products/{product['id']}"
    assert_problem(await api.delete(url, headers=stranger.headers), 403, "forbidden")
    assert_problem(await api.delete(url), 401, "missing_token")
    response = await api.delete(url, headers=seller.headers)
    assert response.status_code == 204
    assert_problem(await api.get(url), 404, "not_found")
    assert_problem(await api.get(f"{url}/stock"), 404, "not_found")
    assert_problem(await api.put(f"{url}/stock", json={"stock": 5}, headers=seller.headers),
                   404, "not_found")
    assert_problem(await api.delete(url, headers=seller.headers), 404, "not_found")
    listed = (await api.get("/api/v1/products", params={"limit": 100})).json()["items"]
    assert product["id"] not in [item["id"] for item in listed]
