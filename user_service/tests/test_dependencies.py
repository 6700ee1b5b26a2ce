"""No route of user_service hops to a worker thread just to resolve its dependencies."""

from __future__ import annotations

from shared.testing.routes import thread_pool_dependencies
from user_service.app import create_app
from user_service.settings import Settings


def test_every_endpoint_and_dependency_is_async() -> None:
    app = create_app(Settings(jwt_key_dir="/nonexistent-not-opened"))
    assert thread_pool_dependencies(app) == []
