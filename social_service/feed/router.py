"""HTTP routes of the newsfeed and the activity stream."""

from __future__ import annotations

from fastapi import APIRouter

from shared.errors import Unauthorized, ValidationFailed, problem_responses
from shared.identity import CurrentUser
from shared.schemas import Page
from social_service.activities.schemas import ActivityOut
from social_service.dependencies import FeedServiceDep
from social_service.params import DEFAULT_LIMIT, Cursor, Limit
from social_service.posts.schemas import PostOut

router = APIRouter(prefix="/api/v1", tags=["feed"])


@router.get("/feed", responses=problem_responses(Unauthorized, ValidationFailed),
            description=("Posts by the people the caller follows, newest first. Pages follow "
                         "(created_at, id), so new posts never shift a later page."))
async def newsfeed(user_id: CurrentUser, feed: FeedServiceDep, limit: Limit = DEFAULT_LIMIT,
                   cursor: Cursor = None) -> Page[PostOut]:
    return await feed.newsfeed(user_id, cursor=cursor, limit=limit)


@router.get("/activities", responses=problem_responses(Unauthorized, ValidationFailed),
            description=("What the people the caller follows did, and what others did to the "
                         "caller's posts, comments and to the caller, newest first. The target is "
                         "what the verb acts on: the post or comment created or liked, the user "
                         "followed. The caller's own actions on others' things show only to "
                         "those others and to the caller's followers."))
async def activities(user_id: CurrentUser, feed: FeedServiceDep, limit: Limit = DEFAULT_LIMIT,
                     cursor: Cursor = None) -> Page[ActivityOut]:
    return await feed.activities(user_id, cursor=cursor, limit=limit)
