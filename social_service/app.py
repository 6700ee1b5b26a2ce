"""social_service application: the lifespan builds its Resources (datastores, the pooled client
of user_service, the feed's timelines); routers are mounted here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from shared.app import create_service_app
from shared.http import service_client
from shared.lifespan import open_datastores
from shared.logging import configure_logging
from social_service.clients import UserDirectory
from social_service.comments.router import router as comments_router
from social_service.dependencies import Resources
from social_service.feed.router import router as feed_router
from social_service.feed.timelines import Timelines
from social_service.follows.router import router as follows_router
from social_service.posts.router import router as posts_router
from social_service.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("social_service", settings.log_level)

    @asynccontextmanager
    async def open_resources() -> AsyncIterator[Resources]:
        async with (
            open_datastores(settings) as datastores,
            service_client("user_service", settings.user_service_url,
                           signer=settings.identity_signer("social_service"),
                           timeout_seconds=settings.user_service_timeout_seconds,
                           hosts=settings.service_hosts) as user_service,
        ):
            users = UserDirectory(
                client=user_service, redis=datastores.redis,
                found_ttl_seconds=settings.user_found_cache_seconds,
                missing_ttl_seconds=settings.user_missing_cache_seconds,
            )
            timelines = Timelines(datastores.redis, datastores.reads,
                                  length=settings.feed_timeline_length,
                                  ttl_seconds=settings.feed_timeline_ttl_seconds)
            yield Resources(settings=settings, datastores=datastores, users=users,
                            timelines=timelines)

    return create_service_app(
        service="social_service",
        title="Social service",
        resources=open_resources,
        routers=[posts_router, comments_router, follows_router, feed_router],
    )
