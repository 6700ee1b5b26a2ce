"""Structural checks on a FastAPI app's routes."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute


def thread_pool_dependencies(app: FastAPI) -> list[str]:
    """Plain `def` endpoints and dependencies: FastAPI runs each in a worker thread per request."""
    found: set[str] = set()

    def walk(dependant: Dependant) -> None:
        call = dependant.call
        if call is not None and not (inspect.iscoroutinefunction(call)
                                     or inspect.isasyncgenfunction(call)):
            found.add(getattr(call, "__qualname__", repr(call)))
        for sub in dependant.dependencies:
            walk(sub)

    def visit(routes: Sequence[BaseRoute]) -> None:
        for route in routes:
            if isinstance(route, APIRoute):
                walk(route.dependant)
            # FastAPI >= 0.16x keeps an included router as one entry wrapping the original.
            included = getattr(route, "original_router", None)
            if included is not None:
                visit(included.routes)

    visit(app.routes)
    return sorted(found)
