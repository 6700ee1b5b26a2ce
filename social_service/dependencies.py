"""What social_service's lifespan builds once, and the dependencies that hand it and the
per-request services to the routes.

Every dependency is `async def`: FastAPI runs a plain `def` dependency in a worker thread, a
thread hop per dependency per request for what is only attribute access.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from shared.dependencies import AppResources, SessionDep
from shared.lifespan import Datastores
from social_service.clients import UserDirectory
from social_service.comments.service import CommentsService
from social_service.feed.service import FeedService
from social_service.follows.service import FollowsService
from social_service.posts.service import PostsService
from social_service.settings import Settings


@dataclass(frozen=True, kw_only=True)
class Resources:
    settings: Settings
    datastores: Datastores
    users: UserDirectory


async def get_resources(resources: AppResources) -> Resources:
    assert isinstance(resources, Resources), "the lifespan hands out this service's Resources"
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_posts_service(session: SessionDep) -> PostsService:
    return PostsService(session)


async def get_comments_service(session: SessionDep) -> CommentsService:
    return CommentsService(session)


async def get_follows_service(session: SessionDep, resources: ResourcesDep) -> FollowsService:
    return FollowsService(session, resources.users)


async def get_feed_service(session: SessionDep) -> FeedService:
    return FeedService(session)


PostsServiceDep = Annotated[PostsService, Depends(get_posts_service)]
CommentsServiceDep = Annotated[CommentsService, Depends(get_comments_service)]
FollowsServiceDep = Annotated[FollowsService, Depends(get_follows_service)]
FeedServiceDep = Annotated[FeedService, Depends(get_feed_service)]
