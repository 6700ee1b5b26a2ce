"""The answers admission gives in front of the router (stock/admission.py) are the route's own: the same
document and status, under the route's metrics label, and only for requests the route would
take as they are. The app runs in-process with long memories, and notes every run of a stock
route's dependencies, so what the layer answered is told apart from what the route did."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import Request
from redis.asyncio import Redis

from shared.dependencies import AppResources
from shared.http import RESENT_HEADER
from shared.internal.stock import hold_path
from shared.testing.apps import RunningApp, running_app
from shared.testing.identity import service_identity_headers, signed_identity_headers
from stock_service.app import create_app
from stock_service.dependencies import Resources, get_catalog_service, get_hold_service
from stock_service.stock.catalog import CatalogService
from stock_service.stock.holds import HoldService
from stock_service.stock.scripts import ProductKeys
from stock_service.tests.conftest import SettingsFactory, new_id
from stock_service.tests.factories import make_product

ROUTE_RUNS: list[str] = []


@pytest.fixture(scope="module")
async def remembering(make_settings: SettingsFactory, redis: Redis) -> AsyncIterator[RunningApp]:
    """The app, with every run of a stock route's dependencies noted in ROUTE_RUNS: the layer in
    front answers without them."""
    settings = make_settings(sold_out_memory_seconds=60, view_memory_seconds=60)
    app = create_app(settings)

    async def holds_noted(request: Request, resources: AppResources) -> HoldService:
        ROUTE_RUNS.append(request.url.path)
        return await get_hold_service(resources)

    async def catalog_noted(request: Request, resources: AppResources) -> CatalogService:
        ROUTE_RUNS.append(request.url.path)
        return await get_catalog_service(resources)

    app.dependency_overrides[get_hold_service] = holds_noted
    app.dependency_overrides[get_catalog_service] = catalog_noted
    async with running_app(app) as running:
        # The steady state (the service's epoch in Redis): an unknown product is then a 404,
        # not a 503 while a first full rebuild runs.
        await running.resources.live.rebuild_all()
        yield running


def service_headers() -> dict[str, str]:
    return service_identity_headers("order_service")  # the service that holds stock


async def reserve(client: httpx.AsyncClient, product_id: int, body: Any,
                  headers: dict[str, str] | None = None) -> httpx.Response:
    return await client.put(hold_path(product_id, new_id()), json=body,
                            headers=service_headers() if headers is None else headers)


async def answered(client: httpx.AsyncClient, method: str, route: str, status: int) -> float:
    metrics = (await client.get("/metrics")).text
    found = re.search(rf'^http_requests_total\{{method="{method}",route="{re.escape(route)}",'
                      rf'service="stock_service",status="{status}"\}} (\S+)$', metrics, re.M)
    return float(found[1]) if found else 0.0


def without_request_id(response: httpx.Response) -> dict[str, Any]:
    body = dict(response.json())
    assert body.pop("request_id") == response.headers["x-request-id"]
    return body


async def test_a_reserve_the_memory_refuses_gets_the_routes_refusal_without_redis(
    remembering: RunningApp, redis: Redis
) -> None:
    client = remembering.client
    assert isinstance(remembering.resources, Resources)
    product = (await make_product(remembering.resources.catalog, total=1)).product_id
    route = "/internal/stock/products/{product_id}/holds/{order_id}"
    body = {"user_id": 1, "quantity": 1}
    assert (await reserve(client, product, body)).status_code == 200
    before = await answered(client, "PUT", route, 409)
    by_lua = await reserve(client, product, body)  # the route asks Redis and learns
    # With the product's live state gone, the route would answer 503 (rebuilding): a 409 now
    # can only come from the memory, in front of the router.
    meta = ProductKeys.of(product).meta
    saved = await redis.dump(meta)
    assert saved is not None
    await redis.delete(meta)
    try:
        ROUTE_RUNS.clear()
        by_memory = await reserve(client, product, body | {"user_id": 2})
        assert ROUTE_RUNS == []
        assert (by_lua.status_code, by_memory.status_code) == (409, 409)
        assert without_request_id(by_lua) == without_request_id(by_memory)
        assert by_memory.json()["code"] == "sold_out"
        assert await answered(client, "PUT", route, 409) == before + 2

        # What the route must see still reaches it: it answers in its own words.
        unsigned = await reserve(client, product, body, headers={})
        forged = await reserve(client, product, body,
                               headers=signed_identity_headers(None, None, key="x" * 40))
        assert (unsigned.status_code, forged.status_code) == (401, 401)
        for bad in ({"user_id": 1, "quantity": 0}, {"user_id": 1}, {"user_id": "x", "quantity": 1},
                    {"user_id": 1, "quantity": 1, "extra": 1}, [1, 1]):
            assert (await reserve(client, product, bad)).status_code == 422, bad
        assert (await client.put(hold_path(product, new_id()), content=b"{",
                                 headers=service_headers())).status_code == 422
        # Not JSON to FastAPI without a JSON content type, and a body too deep for json.loads:
        # the route's answers, never the layer's 409 or a 500.
        as_text = await client.put(hold_path(product, new_id()), content=b'{"user_id": 1, '
                                   b'"quantity": 1}', headers=service_headers())
        deep = await client.put(hold_path(product, new_id()), content=b"[" * 1000,
                                headers=service_headers() | {"content-type": "application/json"})
        assert (as_text.status_code, deep.status_code // 100) == (422, 4)
    finally:
        await redis.restore(meta, 0, saved, replace=True)


async def test_a_remembered_stock_level_is_the_routes_answer(
    remembering: RunningApp, redis: Redis
) -> None:
    client = remembering.client
    assert isinstance(remembering.resources, Resources)
    product = (await make_product(remembering.resources.catalog, total=5)).product_id
    route = "/api/v1/products/{product_id}/stock"
    before = await answered(client, "GET", route, 200)
    first = await client.get(f"/api/v1/products/{product}/stock")  # read from Redis by the route
    await redis.hincrby(ProductKeys.of(product).meta, "remaining", -2)
    ROUTE_RUNS.clear()
    second = await client.get(f"/api/v1/products/{product}/stock")
    assert ROUTE_RUNS == []
    assert first.json() == {"product_id": product, "remaining": 5, "sale_state": "open"}
    # The remembered view, answered in front of the router with the route's bytes and label.
    assert (second.status_code, second.content, second.headers["content-type"]) == \
        (200, first.content, first.headers["content-type"])
    assert await answered(client, "GET", route, 200) == before + 2
    # A product this process never read, or one that does not exist, is the route's to answer.
    assert (await client.get(f"/api/v1/products/{new_id()}/stock")).status_code == 404
    assert len(ROUTE_RUNS) == 1
    assert (await client.get("/api/v1/products/0/stock")).status_code == 422


async def test_a_resent_reserve_of_an_order_holding_units_is_its_hold_not_sold_out(
    remembering: RunningApp
) -> None:
    """shared/http.py sends a reserve again when the connection closed under it: the first may
    have taken the last unit, and the memory it armed must not refuse the order its own hold."""
    client = remembering.client
    assert isinstance(remembering.resources, Resources)
    product = (await make_product(remembering.resources.catalog, total=1)).product_id
    order, body = new_id(), {"user_id": 1, "quantity": 1}
    first = await client.put(hold_path(product, order), json=body, headers=service_headers())
    assert first.status_code == 200
    assert (await reserve(client, product, body | {"user_id": 2})).json()["code"] == "sold_out"
    resent = await client.put(hold_path(product, order), json=body,
                              headers=service_headers() | {RESENT_HEADER: "1"})
    assert (resent.status_code, resent.json()) == (200, first.json())
    # Through the route's own check as well (a memory the layer in front did not consult).
    hold = await remembering.resources.holds.reserve(product, order, user_id=1, quantity=1,
                                                     resent=True)
    assert hold.model_dump(mode="json") == first.json()
    # A resent reserve of an order that holds nothing is still refused, by the script.
    refused = await client.put(hold_path(product, new_id()), json=body | {"user_id": 3},
                               headers=service_headers() | {RESENT_HEADER: "1"})
    assert refused.json()["code"] == "sold_out"
