"""What social_service's lifespan builds once, and the dependencies that hand it and the
per-request services to the routes.

Every dependency is `async def`: FastAPI runs a plain `def` dependency in a worker thread, a
thread hop per dependency per request for what is only attribute access.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from shared.dependencies import AppResources, ReadSessionDep, SessionDep, resources_of
from shared.lifespan import Datastores
from social_service.clients import UserDirectory
from social_service.comments.service import CommentsService
from social_service.feed.service import FeedService
from social_service.feed.timelines import TimelineChanges, Timelines
from social_service.follows.service import FollowsService
from social_service.posts.service import PostsService
from social_service.settings import Settings


@dataclass(frozen=True, kw_only=True)
class Resources:
    settings: Settings
    datastores: Datastores
    users: UserDirectory
    timelines: Timelines


async def get_resources(resources: AppResources) -> Resources:
    return resources_of(resources, Resources)


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_timeline_changes(resources: ResourcesDep) -> AsyncIterator[TimelineChanges]:
    """Applies the request's timeline changes once its transaction committed, before the
    response is sent. A service takes this before SessionDep: FastAPI closes dependencies in
    reverse order, so the session commits first."""
    changes = TimelineChanges(resources.timelines)
    yield changes
    await changes.apply()


# scope="function", like SessionDep: run before the response is sent, not after.
TimelineChangesDep = Annotated[TimelineChanges, Depends(get_timeline_changes, scope="function")]


async def get_posts_reader(reads: ReadSessionDep) -> PostsService:
    return PostsService(reads=reads)


async def get_posts_service(changes: TimelineChangesDep, session: SessionDep) -> PostsService:
    return PostsService(session=session, events=changes)


async def get_comments_reader(reads: ReadSessionDep) -> CommentsService:
    return CommentsService(reads=reads)


async def get_comments_service(session: SessionDep) -> CommentsService:
    return CommentsService(session=session)


async def get_follows_reader(reads: ReadSessionDep, resources: ResourcesDep) -> FollowsService:
    return FollowsService(resources.users, reads=reads,
                          pull_threshold=resources.settings.feed_pull_threshold)


async def get_follows_service(
    changes: TimelineChangesDep, session: SessionDep, resources: ResourcesDep
) -> FollowsService:
    return FollowsService(resources.users, session=session, events=changes,
                          pull_threshold=resources.settings.feed_pull_threshold)


async def get_feed_service(reads: ReadSessionDep, resources: ResourcesDep) -> FeedService:
    return FeedService(reads, resources.timelines)


# Routes that only read get a *Reader: no transaction, no session (shared.reads).
PostsReaderDep = Annotated[PostsService, Depends(get_posts_reader)]
PostsServiceDep = Annotated[PostsService, Depends(get_posts_service)]
CommentsReaderDep = Annotated[CommentsService, Depends(get_comments_reader)]
CommentsServiceDep = Annotated[CommentsService, Depends(get_comments_service)]
FollowsReaderDep = Annotated[FollowsService, Depends(get_follows_reader)]
FollowsServiceDep = Annotated[FollowsService, Depends(get_follows_service)]
FeedServiceDep = Annotated[FeedService, Depends(get_feed_service)]
