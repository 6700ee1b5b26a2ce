"""HTTP routes of follows: following under /follows, each user's two lists under /users/{id}."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from shared.errors import ServiceUnavailable, Unauthorized, ValidationFailed, problem_responses
from shared.identity import CurrentUser
from shared.schemas import Page
from social_service.dependencies import FollowsReaderDep, FollowsServiceDep
from social_service.follows.errors import UserNotFound
from social_service.follows.schemas import FollowOut
from social_service.params import DEFAULT_LIMIT, Cursor, Limit, PathId

router = APIRouter(prefix="/api/v1", tags=["follows"])


@router.put("/follows/{user_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
            responses=problem_responses(Unauthorized, UserNotFound, ValidationFailed,
                                        ServiceUnavailable),
            description=("Idempotent. Following yourself is 422; a user id with no account is 404."))
async def follow(user_id: PathId, me: CurrentUser, follows: FollowsServiceDep) -> Response:
    await follows.follow(me, user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/follows/{user_id}", status_code=status.HTTP_204_NO_CONTENT,
               response_class=Response,
               responses=problem_responses(Unauthorized, ValidationFailed),
               description=("Idempotent: unfollowing someone not followed changes nothing (even an "
                            "id with no account). Unfollowing yourself is 422."))
async def unfollow(user_id: PathId, me: CurrentUser, follows: FollowsServiceDep) -> Response:
    await follows.unfollow(me, user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/users/{user_id}/followers",
            responses=problem_responses(Unauthorized, UserNotFound, ValidationFailed,
                                        ServiceUnavailable),
            description="Who follows the user, most recent follow first.")
async def list_followers(user_id: PathId, _: CurrentUser, follows: FollowsReaderDep,
                         limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> Page[FollowOut]:
    return await follows.followers(user_id, cursor=cursor, limit=limit)


@router.get("/users/{user_id}/following",
            responses=problem_responses(Unauthorized, UserNotFound, ValidationFailed,
                                        ServiceUnavailable),
            description="Whom the user follows, most recent follow first.")
async def list_following(user_id: PathId, _: CurrentUser, follows: FollowsReaderDep,
                         limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> Page[FollowOut]:
    return await follows.following(user_id, cursor=cursor, limit=limit)
