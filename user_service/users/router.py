"""HTTP routes of profiles; the caller is the gateway's X-User-Id."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from shared.contracts import INTERNAL_USER_PATH
from shared.errors import Unauthorized, ValidationFailed, problem_responses
from shared.identity import CurrentUser, internal_callers
from user_service.dependencies import UsersReaderDep, UsersServiceDep
from user_service.users.errors import UserNotFound
from user_service.users.schemas import Profile, ProfileUpdate, PublicProfile, UserRef

router = APIRouter(prefix="/api/v1/users", tags=["users"])
# For other services only: the gateway never routes /internal/**, and it is not in the docs.
internal_router = APIRouter(include_in_schema=False, dependencies=[internal_callers("social_service")])

UserId = Annotated[int, Path(ge=1, le=2**53 - 1)]


@router.get("/me", responses=problem_responses(Unauthorized, UserNotFound))
async def get_my_profile(user_id: CurrentUser, users: UsersReaderDep) -> Profile:
    return Profile.model_validate(await users.get_profile(user_id))


@router.patch(
    "/me",
    responses=problem_responses(Unauthorized, UserNotFound, ValidationFailed),
    description=(
        "Changes only the fields sent. An explicit null clears greeting or profile_image_url; "
        "name cannot be null. An empty body changes nothing."
    ),
)
async def update_my_profile(
    body: ProfileUpdate, user_id: CurrentUser, users: UsersServiceDep
) -> Profile:
    return Profile.model_validate(await users.update_profile(user_id, body))


@router.get("/{user_id}", responses=problem_responses(UserNotFound, ValidationFailed))
async def get_public_profile(user_id: UserId, users: UsersReaderDep) -> PublicProfile:
    return PublicProfile.model_validate(await users.get_profile(user_id))


@internal_router.get(INTERNAL_USER_PATH, responses=problem_responses(UserNotFound, ValidationFailed))
async def get_user_ref(user_id: UserId, users: UsersReaderDep) -> UserRef:
    await users.require_user(user_id)
    return UserRef(id=user_id)
