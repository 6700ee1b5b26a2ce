"""A service app in-process for tests: built from its package name, its lifespan run, its
requests over httpx's ASGI transport."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.dependencies import RESOURCES_STATE_KEY, resources_of
from shared.identity import IDENTITY_VERIFIER_STATE
from shared.testing.identity import sign_at_send

R = TypeVar("R")


def service_app(package: str, **settings: Any) -> FastAPI:
    """`<package>.app.create_app` on its own Settings (`environment` "test" unless given). A
    test that needs another service running names it by package: its tests import nothing of
    that service."""
    create_app: Callable[..., FastAPI] = importlib.import_module(f"{package}.app").create_app
    settings_class = importlib.import_module(f"{package}.settings").Settings
    return create_app(settings_class(**{"environment": "test", **settings}))


class _WithLifespanState:
    """httpx's ASGI transport runs no lifespan; this hands each request the lifespan's state, as
    uvicorn does (a shallow copy per request)."""

    def __init__(self, app: ASGIApp, state: Mapping[str, Any]) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope["state"] = dict(self.state)
        await self.app(scope, receive, send)


@dataclass(frozen=True)
class RunningApp:
    client: httpx.AsyncClient
    # The service's own Resources object, as its lifespan built it.
    resources: Any

    def resources_as(self, kind: type[R]) -> R:
        """The Resources object with the service's own type (what its lifespan must build)."""
        return resources_of(self.resources, kind)


@asynccontextmanager
async def running_app(app: FastAPI, *, base_url: str = "http://service") -> AsyncIterator[RunningApp]:
    async with app.router.lifespan_context(app) as state:
        state = state or {}
        transport = httpx.ASGITransport(app=_WithLifespanState(app, state))
        # Identity headers are signed for this service (shared.testing.identity).
        verifier = state.get(IDENTITY_VERIFIER_STATE)
        audience = verifier.audience if verifier is not None else "no-audience"
        hook = sign_at_send(lambda _: audience)
        async with httpx.AsyncClient(transport=transport, base_url=base_url,
                                     event_hooks={"request": [hook]}) as client:
            yield RunningApp(client, state.get(RESOURCES_STATE_KEY))
