"""The gateway's own routes: health, readiness, merged OpenAPI, metrics, CORS."""

from __future__ import annotations

import asyncio

import httpx

from gateway.app import create_app
from gateway.tests.conftest import READINESS_ASKED, Rig, closed_port_url, gateway_settings
from shared.services import SERVICES
from shared.testing.net import ThreadedServer


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.headers["x-request-id"]


async def test_readyz_when_all_upstreams_ready(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready",
                               "checks": sorted(["redis", *(app.name for app in SERVICES)])}


async def test_readyz_names_failing_upstreams(rig: Rig, redis_url: str) -> None:
    upstreams = {name: server.url for name, server in rig.upstreams.items()}
    upstreams["stock"] = closed_port_url()
    server = ThreadedServer(create_app(gateway_settings(upstreams, redis_url))).start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as c:
            response = await c.get("/readyz")
    finally:
        server.stop()
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["failing"] == ["stock"]
    assert response.json()["code"] == "not_ready"  # the code every service answers with


async def test_openapi_merges_only_routes_each_service_owns(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    paths = document["paths"]
    assert "/internal/secret" not in paths
    assert "/api/v1/users/me" in paths
    assert paths["/api/v1/users/me"]["get"]["tags"] == ["user"]
    assert paths["/api/v1/users/me"]["get"]["security"] == [{"bearer": []}]
    assert paths["/api/v1/users/{id}/followers"]["get"]["tags"] == ["social"]
    stock = paths["/api/v1/products/{id}/stock"]["get"]
    assert stock["tags"] == ["stock"]
    assert "security" not in stock  # public route
    # Each service defines its own "Thing": the clash is resolved by renaming, refs follow.
    ref = stock["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert schema["properties"] == {"stock": {"type": "string"}}


async def test_docs_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert "/openapi.json" in response.text


async def test_metrics_count_requests_by_route_pattern(rig: Rig, client: httpx.AsyncClient) -> None:
    await client.get("/api/v1/users/12345", headers={"Authorization": f"Bearer {rig.token()}"})
    text = (await client.get(rig.metrics_url)).text
    assert 'route="/api/v1/users/**"' in text
    assert "/api/v1/users/12345" not in text
    assert "http_request_duration_seconds_bucket" in text


async def test_cors_only_for_configured_origins(rig: Rig, redis_url: str) -> None:
    upstreams = {name: server.url for name, server in rig.upstreams.items()}
    settings = gateway_settings(upstreams, redis_url, cors_origins=["https://shop.example"])
    server = ThreadedServer(create_app(settings)).start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as c:
            preflight = await c.options("/api/v1/orders", headers={
                "Origin": "https://shop.example", "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type"})
            stranger = await c.get("/api/v1/products/1", headers={"Origin": "https://evil.example"})
            # A refused preflight is an error like any other: problem+json with the request id.
            refused = await c.options("/api/v1/orders", headers={
                "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    finally:
        server.stop()
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
    assert "access-control-allow-origin" not in stranger.headers
    assert refused.status_code == 400
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "cors_rejected"
    assert refused.json()["request_id"] == refused.headers["x-request-id"]


async def test_no_cors_headers_by_default(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/products/1", headers={"Origin": "https://shop.example"})
    assert "access-control-allow-origin" not in response.headers


async def test_openapi_documents_what_the_gateway_itself_answers(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    secured = paths["/api/v1/users/me"]["get"]["responses"]
    public = paths["/api/v1/products/{id}/stock"]["get"]["responses"]
    assert "401" in secured
    assert "401" not in public
    assert {"502", "503", "504"} <= set(secured) & set(public)


async def test_openapi_documents_the_404_for_a_parameter_the_gateway_will_not_route(
    client: httpx.AsyncClient,
) -> None:
    # A control character in a path parameter is refused by the route table itself (404,
    # whatever the service would say), so every operation with a parameter can answer 404.
    response = await client.get("/api/v1/products/%0B/stock")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "404" in paths["/api/v1/products/{id}/stock"]["get"]["responses"]
    assert "404" in paths["/api/v1/users/{id}/followers"]["get"]["responses"]
    assert "404" not in paths["/api/v1/users/me"]["get"]["responses"]


async def test_metrics_are_not_on_the_public_port(rig: Rig, client: httpx.AsyncClient) -> None:
    """The attack: anyone reads every route's request rates and latencies from the public port."""
    response = await client.get("/metrics")
    assert response.status_code == 404
    assert "http_requests_total" not in response.text
    internal = await client.get(rig.metrics_url)
    assert internal.status_code == 200
    assert "http_requests_total" in internal.text
    assert (await client.get(rig.metrics_url.replace("/metrics", "/other"))).status_code == 404


async def test_readiness_is_cached_so_a_crowd_does_not_fan_out(
        rig: Rig, redis_url: str) -> None:
    """The attack: every public /readyz asks every service's /readyz (and their databases)."""
    upstreams = {name: server.url for name, server in rig.upstreams.items()}
    server = ThreadedServer(create_app(gateway_settings(
        upstreams, redis_url, readiness_cache_seconds=30))).start()
    try:
        before = dict(READINESS_ASKED)
        async with httpx.AsyncClient(base_url=server.url) as c:
            answers = await asyncio.gather(*(c.get("/readyz") for _ in range(20)))
    finally:
        server.stop()
    assert {answer.status_code for answer in answers} == {200}
    asked = {name: READINESS_ASKED.get(name, 0) - before.get(name, 0) for name in upstreams}
    assert set(asked.values()) == {1}, asked
