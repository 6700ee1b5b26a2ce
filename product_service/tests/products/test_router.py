"""The product routes over HTTP, with a real stock_service behind them: creating, reading,
listing, changing and deleting products, what stock_service learns of each, and the bad input
that must be a 4xx problem, never a 500."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from product_service.dependencies import Resources
from product_service.products.models import Product
from product_service.tests.helpers import create_product, in_, product_body
from shared.clock import utcnow
from shared.errors import ProblemError
from shared.internal.stock import StockRegistration
from shared.testing.identity import (
    changed_after_signing,
    identity_headers,
    new_user_id,
    seller_headers,
)
from shared.testing.problems import assert_problem

PRODUCT_FIELDS = {"id", "seller_id", "name", "description", "price", "kind", "sale_opens_at",
                  "sale_closes_at", "limit_per_user", "sale_state", "created_at", "updated_at"}


async def test_a_created_product_reads_back_as_answered_and_is_registered_with_stock(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    seller = new_user_id()
    opens, closes = in_(days=1), in_(days=2)
    created = await create_product(client, seller, name="키보드", sale_opens_at=opens,
                                   sale_closes_at=closes, limit_per_user=2, stock=30)
    assert set(created) == PRODUCT_FIELDS
    assert (created["seller_id"], created["name"], created["kind"], created["price"],
            created["limit_per_user"], created["sale_state"]) == (
        seller, "키보드", "preorder", 129_000, 2, "scheduled")
    assert created["sale_opens_at"].endswith("Z")
    assert created["created_at"].endswith("Z")
    assert created["updated_at"] == created["created_at"]
    fetched = await client.get(f"/api/v1/products/{created['id']}")
    assert fetched.status_code == 200
    assert fetched.headers["content-type"] == "application/json"
    assert fetched.json() == created
    # A second read comes from the cache, and says the same.
    assert (await client.get(f"/api/v1/products/{created['id']}")).json() == created

    entry = await resources.stock.entry(created["id"])
    assert entry is not None
    assert (entry.seller_id, entry.price, entry.total, entry.remaining, entry.limit_per_user,
            entry.sale_state, entry.deleted) == (seller, 129_000, 30, 30, 2, "scheduled", False)


async def test_a_general_product_is_open_from_its_creation(client: httpx.AsyncClient) -> None:
    created = await create_product(client, new_user_id(), kind="general", sale_opens_at=None,
                                   sale_closes_at=in_(days=3))
    assert (created["sale_opens_at"], created["sale_state"]) == (None, "open")


async def test_a_preorder_that_opened_already_is_open(client: httpx.AsyncClient) -> None:
    created = await create_product(client, new_user_id(), sale_opens_at=in_(minutes=-1))
    assert created["sale_state"] == "open"


@pytest.mark.parametrize("fields", [
    {"kind": "preorder", "sale_opens_at": None},
    {"kind": "general"},  # with the default sale_opens_at: a general product takes none
    {"kind": "auction"},
    {"sale_closes_at": in_(hours=1)},  # before the opening a day from now
    {"sale_opens_at": "2030-01-01T00:00:00"},  # no zone
    {"sale_opens_at": "1969-12-31T23:59:59Z"},
    # In range as written, out of it in UTC: converting them overflowed into a 500.
    {"sale_opens_at": "9999-12-31T23:59:59-05:00"},
    {"sale_opens_at": "0001-01-01T00:00:00+05:00"},
    {"sale_opens_at": "not a time"},
    # A number is not an ISO-8601 time (pydantic's lax mode read it as epoch seconds).
    {"sale_opens_at": 1_900_000_000},
    {"sale_opens_at": in_(days=1), "sale_closes_at": 1_900_000_000.5},
    {"price": -1},
    {"price": 2**53},
    {"price": "lots"},
    {"stock": -1},
    {"stock": 1_000_000_001},
    {"limit_per_user": 0},
    {"name": ""},
    {"name": "   "},
    {"name": "x" * 201},
    {"description": "x" * 5001},
    {"name": None},
    {"seller_id": 1},
    {"stock_left": 3},
])
async def test_bad_product_bodies_are_422(client: httpx.AsyncClient, session: AsyncSession,
                                          fields: dict[str, Any]) -> None:
    seller = new_user_id()
    response = await client.post("/api/v1/products", json=product_body(**fields),
                                 headers=seller_headers(seller))
    assert_problem(response, 422, "validation_error")
    assert await session.scalar(
        select(func.count()).where(Product.seller_id == seller)) == 0


@pytest.mark.parametrize("missing", ["name", "description", "price", "stock", "kind"])
async def test_each_required_field_is_required(client: httpx.AsyncClient, missing: str) -> None:
    body = product_body()
    del body[missing]
    response = await client.post("/api/v1/products", json=body,
                                 headers=seller_headers(new_user_id()))
    assert_problem(response, 422, "validation_error")


async def test_malformed_json_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/products", content=b"{not json",
                                 headers={**seller_headers(new_user_id()),
                                          "content-type": "application/json"})
    assert_problem(response, 422, "validation_error")


async def test_changes_need_a_signed_in_user(client: httpx.AsyncClient) -> None:
    product = await create_product(client, new_user_id())
    url = f"/api/v1/products/{product['id']}"
    assert_problem(await client.post("/api/v1/products", json=product_body()), 401,
                   "missing_token")
    assert_problem(await client.patch(url, json={"name": "x"}), 401, "missing_token")
    assert_problem(await client.delete(url), 401, "missing_token")


@pytest.mark.parametrize("product_id", ["0", "-1", str(2**53), "abc", "1.5"])
async def test_ids_out_of_range_are_422(client: httpx.AsyncClient, product_id: str) -> None:
    seller = seller_headers(new_user_id())
    url = f"/api/v1/products/{product_id}"
    assert_problem(await client.get(url), 422, "validation_error")
    assert_problem(await client.patch(url, json={"name": "x"}, headers=seller), 422,
                   "validation_error")
    assert_problem(await client.delete(url, headers=seller), 422, "validation_error")


async def test_an_unknown_product_is_404(client: httpx.AsyncClient) -> None:
    url = f"/api/v1/products/{2**53 - 1}"
    assert_problem(await client.get(url), 404, "not_found")
    # Twice: the second answer comes from the cached "no such product".
    assert_problem(await client.get(url), 404, "not_found")
    seller = seller_headers(new_user_id())
    assert_problem(await client.patch(url, json={"name": "x"}, headers=seller), 404, "not_found")
    assert_problem(await client.delete(url, headers=seller), 404, "not_found")


# Changes


async def test_the_seller_changes_fields_and_reads_the_change_back_at_once(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    seller = new_user_id()
    product = await create_product(client, seller)
    url = f"/api/v1/products/{product['id']}"
    await client.get(url)  # cached
    opens = in_(days=5)
    response = await client.patch(url, json={"name": "New name", "price": 99_000,
                                             "sale_opens_at": opens, "limit_per_user": 3},
                                  headers=seller_headers(seller))
    assert response.status_code == 200, response.text
    changed = response.json()
    assert (changed["name"], changed["price"], changed["limit_per_user"]) == (
        "New name", 99_000, 3)
    assert changed["updated_at"] > product["updated_at"]
    assert changed["created_at"] == product["created_at"]
    assert (await client.get(url)).json() == changed
    entry = await resources.stock.entry(product["id"])
    assert entry is not None
    assert (entry.price, entry.limit_per_user, entry.total) == (99_000, 3, 30)
    assert entry.sale_opens_at is not None
    assert entry.sale_opens_at.isoformat()[:19] == opens[:19]


async def test_null_clears_the_closing_time_and_the_limit_and_absent_fields_stay(
    client: httpx.AsyncClient
) -> None:
    seller = new_user_id()
    product = await create_product(client, seller, sale_closes_at=in_(days=3), limit_per_user=2)
    url = f"/api/v1/products/{product['id']}"
    response = await client.patch(url, json={"sale_closes_at": None, "limit_per_user": None},
                                  headers=seller_headers(seller))
    assert response.status_code == 200, response.text
    changed = response.json()
    assert (changed["sale_closes_at"], changed["limit_per_user"]) == (None, None)
    assert (changed["name"], changed["sale_opens_at"]) == (product["name"],
                                                           product["sale_opens_at"])
    unchanged = await client.patch(url, json={}, headers=seller_headers(seller))
    assert unchanged.status_code == 200
    assert unchanged.json() == changed


@pytest.mark.parametrize("change", [
    {"name": None},
    {"price": None},
    {"description": None},
    {"sale_opens_at": None},  # a preorder needs its opening
    {"sale_closes_at": in_(hours=1)},  # before the opening a day from now
    {"limit_per_user": 0},
    {"price": -5},
    {"stock": 5},  # the stock is PUT .../stock, on stock_service
    {"kind": "general"},
    {"sale_opens_at": "2030-01-01T00:00:00"},
    {"sale_closes_at": "9999-12-31T23:59:59-00:01"},
    {"sale_opens_at": 1_900_000_000},
])
async def test_bad_changes_are_422_and_change_nothing(
    client: httpx.AsyncClient, change: dict[str, Any]
) -> None:
    seller = new_user_id()
    product = await create_product(client, seller)
    url = f"/api/v1/products/{product['id']}"
    assert_problem(await client.patch(url, json=change, headers=seller_headers(seller)), 422,
                   "validation_error")
    assert (await client.get(url)).json() == product


async def test_an_account_without_the_seller_role_cannot_list_a_product(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    buyer = new_user_id()
    response = await client.post("/api/v1/products", json=product_body(),
                                 headers=identity_headers(buyer))
    assert_problem(response, 403, "forbidden")
    count = await session.scalar(select(func.count()).select_from(Product)
                                 .where(Product.seller_id == buyer))
    assert count == 0


async def test_a_forged_role_header_is_not_believed(client: httpx.AsyncClient) -> None:
    """The attack: a buyer adds `X-User-Roles: seller` to a request the gateway signed."""
    body = json.dumps(product_body()).encode()
    headers = changed_after_signing(identity_headers(new_user_id()), {"X-User-Roles": "seller"},
                                    method="POST", target="/api/v1/products", body=body,
                                    audience="product_service")
    assert_problem(await client.post("/api/v1/products", content=body, headers={
        **headers, "content-type": "application/json"}), 401, "missing_token")


async def test_another_users_change_or_delete_is_403(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    product = await create_product(client, new_user_id())
    url = f"/api/v1/products/{product['id']}"
    stranger = seller_headers(new_user_id())
    assert_problem(await client.patch(url, json={"price": 1}, headers=stranger), 403, "forbidden")
    assert_problem(await client.delete(url, headers=stranger), 403, "forbidden")
    assert (await client.get(url)).json() == product
    entry = await resources.stock.entry(product["id"])
    assert entry is not None
    assert (entry.price, entry.deleted) == (129_000, False)


async def test_once_the_sale_opened_window_price_and_limit_are_fixed(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    """The attack: a seller raises the price (or the limit) once the crowd is in line."""
    seller = new_user_id()
    headers = seller_headers(seller)
    product = await create_product(client, seller, sale_opens_at=in_(minutes=-1),
                                   limit_per_user=2)
    url = f"/api/v1/products/{product['id']}"
    for change in ({"sale_opens_at": in_(days=1)}, {"sale_closes_at": in_(days=1)},
                   {"limit_per_user": 5}, {"limit_per_user": None}, {"price": 1_000_000},
                   {"price": 1_000, "name": "Sale!"}):
        assert_problem(await client.patch(url, json=change, headers=headers), 409,
                       "invalid_state")
    # The same values again are no change; the name and description may still change.
    same = await client.patch(url, json={"limit_per_user": 2, "price": 129_000},
                              headers=headers)
    assert same.status_code == 200
    renamed = await client.patch(url, json={"name": "Sale!"}, headers=headers)
    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["price"], renamed.json()["name"]) == (129_000, "Sale!")
    entry = await resources.stock.entry(product["id"])
    assert entry is not None
    assert (entry.price, entry.limit_per_user) == (129_000, 2)

    general = await create_product(client, seller, kind="general", sale_opens_at=None)
    assert_problem(await client.patch(f"/api/v1/products/{general['id']}",
                                      json={"sale_closes_at": in_(days=1)}, headers=headers),
                   409, "invalid_state")


async def test_stock_services_refusal_is_answered_as_it_is_and_nothing_changes(
    client: httpx.AsyncClient, resources: Resources, session: AsyncSession
) -> None:
    """stock_service judges the window by its own ledger: here it knows the sale has opened
    while the catalogue still says it is a day away."""
    seller = new_user_id()
    product = await create_product(client, seller, sale_opens_at=in_(minutes=-1))
    await session.execute(update(Product).where(Product.id == product["id"])
                          .values(sale_opens_at=utcnow() + timedelta(days=1)))
    await session.commit()
    url = f"/api/v1/products/{product['id']}"
    refused = await client.patch(url, json={"sale_opens_at": in_(days=2)},
                                 headers=seller_headers(seller))
    body = assert_problem(refused, 409, "invalid_state")
    assert "opened" in body["title"]
    row = await session.scalar(select(Product.sale_opens_at).where(Product.id == product["id"]))
    assert row is not None
    assert row > utcnow() + timedelta(hours=23)
    assert row < utcnow() + timedelta(days=1, hours=1)
    entry = await resources.stock.entry(product["id"])
    assert entry is not None
    assert entry.sale_state == "open"


# Deleting


async def test_a_deleted_product_is_gone_and_stock_refuses_it(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    seller = new_user_id()
    product = await create_product(client, seller, kind="general", sale_opens_at=None)
    url = f"/api/v1/products/{product['id']}"
    await client.get(url)  # cached
    response = await client.delete(url, headers=seller_headers(seller))
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(await client.get(url), 404, "not_found")
    listed = await client.get("/api/v1/products", params={"limit": 100})
    assert product["id"] not in [item["id"] for item in listed.json()["items"]]
    assert_problem(await client.delete(url, headers=seller_headers(seller)), 404, "not_found")
    assert_problem(await client.patch(url, json={"name": "x"}, headers=seller_headers(seller)),
                   404, "not_found")
    entry = await resources.stock.entry(product["id"])
    assert entry is not None
    assert entry.deleted
    with pytest.raises(ProblemError) as refused:
        await resources.stock.register(product["id"],
                                       StockRegistration(seller_id=seller, price=1, total=1))
    assert refused.value.code == "not_found"


# Listing


async def pages(client: httpx.AsyncClient, *, limit: int, **params: Any) -> list[list[dict[str, Any]]]:
    found: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/v1/products", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"items", "next_cursor"}
        found.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return found


async def test_the_list_is_newest_first_paged_without_gaps_and_filters_by_kind(
    client: httpx.AsyncClient
) -> None:
    seller = new_user_id()
    made = [await create_product(client, seller, name=f"p{i}",
                                 **({"kind": "general", "sale_opens_at": None} if i % 2 else {}))
            for i in range(7)]
    listed = [item for page in await pages(client, limit=3) for item in page]
    ours = [item for item in listed if item["seller_id"] == seller]
    assert [item["id"] for item in ours] == [p["id"] for p in reversed(made)]
    assert ours[0] == made[-1]
    assert len({item["id"] for item in listed}) == len(listed)

    generals = [item for page in await pages(client, limit=2, kind="general") for item in page]
    assert {item["kind"] for item in generals} == {"general"}
    assert [item["id"] for item in generals if item["seller_id"] == seller] == [
        p["id"] for p in reversed(made) if p["kind"] == "general"]


async def test_a_full_last_page_sends_no_cursor(client: httpx.AsyncClient) -> None:
    first = (await client.get("/api/v1/products", params={"limit": 100})).json()
    total = len(first["items"])
    if first["next_cursor"] is None and total:
        exact = (await client.get("/api/v1/products", params={"limit": total})).json()
        assert exact["next_cursor"] is None


@pytest.mark.parametrize("params", [
    {"limit": 0}, {"limit": 101}, {"limit": "x"}, {"kind": "auction"},
    {"cursor": "not-a-cursor"}, {"cursor": "eyJ0IjoxfQ"},  # {"t":1}: no id
    {"cursor": "eyJpZCI6MSwidCI6LTF9"},  # {"id":1,"t":-1}
    {"cursor": "x" * 600},
])
async def test_bad_list_parameters_are_422(client: httpx.AsyncClient,
                                           params: dict[str, Any]) -> None:
    assert_problem(await client.get("/api/v1/products", params=params), 422, "validation_error")
