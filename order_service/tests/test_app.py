"""order_service answers health, readiness and metrics against its real, migrated schema, on its
public port and on the port for the other services' calls."""

from __future__ import annotations

import httpx
import pytest

from shared.testing.apps import running_app
from shared.testing.net import free_port
from shared.testing.service_frame import ServiceFrameTests


class TestOrderServiceFrame(ServiceFrameTests):
    package = "order_service"
    schema = "preorder_order"

    async def test_serves_its_internal_port_with_the_same_state(
        self, database_url: str, redis_url: str
    ) -> None:
        # payment_service's calls have a socket of their own (shared/internal_listener.py): the
        # same app and the lifespan's Resources, apart from the public port's accept queue.
        port = free_port()
        app = self.make_app(database_url=database_url, redis_url=redis_url, internal_port=port)
        async with running_app(app) as running, httpx.AsyncClient() as outside:
            internal = await outside.get(f"http://127.0.0.1:{port}/readyz",
                                         headers={"X-Request-Id": "test-req-internal"})
            public = await running.client.get("/readyz")
        assert internal.status_code == public.status_code == 200
        assert internal.json() == public.json()
        assert internal.headers["x-request-id"] == "test-req-internal"

    async def test_listens_on_no_internal_port_unless_told(
        self, database_url: str, redis_url: str
    ) -> None:
        port = free_port()
        app = self.make_app(database_url=database_url, redis_url=redis_url)
        async with running_app(app), httpx.AsyncClient() as outside:
            with pytest.raises(httpx.ConnectError):
                await outside.get(f"http://127.0.0.1:{port}/readyz")
