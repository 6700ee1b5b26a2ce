"""How a request reaches what the lifespan built: the app's Resources object, its datastores and
the request's database session. Tests replace `app_resources` through `dependency_overrides`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Protocol, TypeVar, cast

from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import Scope

from shared.db import session_scope
from shared.lifespan import Datastores
from shared.reads import ReadSession

# The key under which create_service_app's lifespan hands the Resources object to requests.
RESOURCES_STATE_KEY = "resources"
Part = TypeVar("Part")


class HasDatastores(Protocol):
    """What every service's Resources offers the shared frame."""

    @property
    def datastores(self) -> Datastores: ...


async def app_resources(request: Request) -> object:
    """The frozen Resources object the app's lifespan built (each service narrows its type)."""
    return getattr(request.state, RESOURCES_STATE_KEY)


AppResources = Annotated[object, Depends(app_resources)]

R = TypeVar("R")


def resources_of(resources: object, kind: type[R]) -> R:
    """`resources` as the service's own Resources class: what its lifespan must have built."""
    assert isinstance(resources, kind), "the lifespan hands out this service's Resources"
    return resources


def resource_in_scope(scope: Scope, name: str, kind: type[Part]) -> Part | None:
    """For a layer in front of the router (shared/fast_path.py), which has no dependencies:
    the Resources object's `name` if it is a `kind`, else None (no lifespan ran, or a test
    replaced what it built: the route then answers)."""
    resources = scope.get("state", {}).get(RESOURCES_STATE_KEY)
    part = getattr(resources, name, None)
    return part if isinstance(part, kind) else None


def datastores_of(resources: object) -> Datastores:
    return cast(HasDatastores, resources).datastores


# Each of these reads the Resources object itself rather than through a Datastores dependency:
# every level of dependencies costs FastAPI work on every request.


async def get_db_session(resources: AppResources) -> AsyncIterator[AsyncSession]:
    """The one place that commits: on success after the handler, rollback on any error."""
    datastores = datastores_of(resources)
    # As a context manager, not `async for`: the handler's exception must be thrown into
    # session_scope (to roll back at once), not left to the garbage collector.
    scope = asynccontextmanager(session_scope)(datastores.sessionmaker, datastores.after_commit)
    async with scope as session:
        yield session


async def get_read_session(resources: AppResources) -> ReadSession:
    return datastores_of(resources).reads


async def get_redis(resources: AppResources) -> Redis:
    return datastores_of(resources).redis


# scope="function": commit before the response is sent, so a client that gets 201 can rely on it.
SessionDep = Annotated[AsyncSession, Depends(get_db_session, scope="function")]
# For routes that only read: no transaction, no session, nothing to commit.
ReadSessionDep = Annotated[ReadSession, Depends(get_read_session)]
RedisDep = Annotated[Redis, Depends(get_redis)]
