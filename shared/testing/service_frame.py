"""What every service app must do, whatever its domain: a test base class each service's
tests/test_app.py subclasses with its own package, so the checks live in one place.

    class TestProductServiceFrame(ServiceFrameTests):
        package = "product_service"
        schema = "preorder_product"

By convention each service has `<package>.models` (every table, on `<package>.db.Base`), which
its migrations/env.py imports and the drift check compares with the migrated schema.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import httpx
import pytest
from alembic import command
from fastapi import FastAPI

from shared.migrate import alembic_config
from shared.testing.apps import running_app, service_app
from shared.testing.datastores import fresh_database
from shared.testing.routes import thread_pool_dependencies


class ServiceFrameTests:
    package: ClassVar[str]
    schema: ClassVar[str]

    @classmethod
    def make_app(cls, **settings: Any) -> FastAPI:
        return service_app(cls.package, **settings)

    @pytest.fixture(scope="class")
    @classmethod
    def database_url(cls) -> str:
        # A schema of its own: never drops the one a service's other tests are using.
        return fresh_database(cls.package, cls.schema, "frame")

    @pytest.fixture(scope="class")
    @classmethod
    async def client(cls, database_url: str, redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
        app = cls.make_app(database_url=database_url, redis_url=redis_url)
        async with running_app(app) as running:
            yield running.client

    async def test_healthz_answers(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

    async def test_readyz_checks_database_and_redis(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/readyz")
        assert response.status_code == 200
        assert response.json()["checks"] == ["database", "redis"]

    async def test_unknown_path_is_problem_json_with_request_id(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/api/v1/nothing-here", headers={"X-Request-Id": "test-req-0001"})
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["x-request-id"] == "test-req-0001"
        body = response.json()
        assert body["code"] == "not_found"
        assert body["request_id"] == "test-req-0001"

    async def test_wrong_method_is_problem_json(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/healthz")
        assert response.status_code == 405
        assert response.json()["code"] == "method_not_allowed"

    async def test_metrics_are_exposed(self, client: httpx.AsyncClient) -> None:
        await client.get("/healthz")
        text = (await client.get("/metrics")).text
        assert 'http_requests_total{' in text
        assert 'route="/healthz"' in text

    async def test_readyz_fails_when_database_is_unreachable(self, redis_url: str) -> None:
        # Port 9 on loopback has no MySQL: readiness must say so instead of hanging or claiming ready.
        app = self.make_app(database_url=f"mysql+asyncmy://root@127.0.0.1:9/{self.schema}",
                            redis_url=redis_url)
        async with running_app(app) as running:
            response = await running.client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["failing"] == ["database"]

    async def test_refuses_to_start_without_the_identity_public_keys(
        self, database_url: str, redis_url: str
    ) -> None:
        # Without them the service could only refuse every caller, or believe every one.
        app = self.make_app(database_url=database_url, redis_url=redis_url,
                            identity_public_keys=None)
        with pytest.raises(RuntimeError, match="IDENTITY_PUBLIC_KEYS"):
            async with running_app(app):
                pass

    def test_no_route_resolves_dependencies_in_a_worker_thread(self) -> None:
        assert thread_pool_dependencies(self.make_app()) == []

    def test_migrations_match_the_models(self, database_url: str) -> None:
        """`alembic check` through the service's own migrations/env.py: fails when the models
        (every table `<package>.models` gathers) and the migrated schema differ, and when env.py
        does not hand Alembic those models (autogenerate would then write empty revisions)."""
        command.check(alembic_config(self.package, database_url))

    def test_models_module_gathers_the_service_metadata(self) -> None:
        models = importlib.import_module(f"{self.package}.models")
        base = importlib.import_module(f"{self.package}.db").Base
        assert models.metadata is base.metadata
