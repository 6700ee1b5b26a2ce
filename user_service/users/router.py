"""HTTP routes of profiles and password change; the caller is the gateway's X-User-Id."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from shared.errors import NotFound, Unauthorized, ValidationFailed, problem_responses
from shared.identity import CurrentSession, CurrentUser
from user_service.auth.errors import TooManyAttempts, WrongCurrentPassword
from user_service.auth.schemas import PasswordChange
from user_service.dependencies import Auth, Users
from user_service.users.schemas import Profile, ProfileUpdate, PublicProfile

router = APIRouter(prefix="/api/v1/users", tags=["users"])

UserId = Annotated[int, Path(ge=1, le=2**53 - 1)]


@router.get("/me", responses=problem_responses(Unauthorized, NotFound))
async def get_my_profile(user_id: CurrentUser, users: Users) -> Profile:
    return Profile.model_validate(await users.get_profile(user_id))


@router.patch(
    "/me",
    responses=problem_responses(Unauthorized, NotFound, ValidationFailed),
    description=(
        "Changes only the fields sent. An explicit null clears greeting or profile_image_url; "
        "name cannot be null. An empty body changes nothing."
    ),
)
async def update_my_profile(body: ProfileUpdate, user_id: CurrentUser, users: Users) -> Profile:
    return Profile.model_validate(await users.update_profile(user_id, body))


@router.put(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(
        Unauthorized, WrongCurrentPassword, NotFound, ValidationFailed, TooManyAttempts
    ),
    description=(
        "Sets a new password and revokes every other session of the user; the caller's "
        "session stays signed in. A wrong current_password is 403 `invalid_credentials`, "
        "not 401: the caller's token is fine, and a 401 would make clients sign out. Wrong "
        "current passwords count against the account like failed logins (429 "
        "`too_many_attempts` past the limit)."
    ),
)
async def change_my_password(
    body: PasswordChange, user_id: CurrentUser, session_id: CurrentSession, auth: Auth
) -> Response:
    await auth.change_password(
        user_id, session_id,
        current_password=body.current_password, new_password=body.new_password,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{user_id}", responses=problem_responses(NotFound, ValidationFailed))
async def get_public_profile(user_id: UserId, users: Users) -> PublicProfile:
    return PublicProfile.model_validate(await users.get_profile(user_id))
