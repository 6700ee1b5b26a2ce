"""HTTP routes of sign-up, verification, login, token refresh, logout, password change and the JWKS."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from shared.errors import TooManyRequests, Unauthorized, ValidationFailed, problem_responses
from shared.identity import ClientIp, CurrentSession, CurrentUser
from user_service.auth.errors import (
    CodeExpired,
    EmailNotVerified,
    EmailTaken,
    InvalidCode,
    InvalidCredentials,
    InvalidToken,
    TokenExpired,
    TokenRevoked,
    TooManyAttempts,
    WrongCurrentPassword,
)
from user_service.auth.schemas import (
    EmailVerified,
    LoginRequest,
    PasswordChange,
    RefreshRequest,
    ResendRequest,
    SignupRequest,
    TokenPair,
    VerifyEmailRequest,
)
from user_service.auth.service import SIGNUP_TOKEN_HEADER
from user_service.dependencies import AuthServiceDep, TokenSignerDep
from user_service.users.errors import UserNotFound
from user_service.users.schemas import Account

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
# The password change lives under the profile's path but is a sign-in rule (it checks the
# password and revokes sessions), so auth owns it and users never imports auth.
account_router = APIRouter(prefix="/api/v1/users", tags=["auth"])
well_known_router = APIRouter(tags=["auth"])


@router.post(
    "/signup",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(EmailTaken, ValidationFailed, TooManyRequests),
    description=(
        "Creates an unverified account and mails a six-digit code to the address; an "
        "unverified account of the address is replaced. The answer's `Signup-Token` header "
        "goes, as `signup_token`, with "
        "the code to verify-email: it proves the code is typed by whoever chose the password, "
        "and is required when this sign-up replaced one whose code was still live. A sign-up "
        "within a minute of the address's last mail sends none (resend after the minute). "
        "At most 10 "
        "sign-ups per client address per hour (and a total per hour for everyone), else 429 "
        "`rate_limited` with Retry-After."
    ),
)
async def signup(body: SignupRequest, auth: AuthServiceDep, client_ip: ClientIp,
                 response: Response) -> Account:
    signed_up = await auth.signup(body, client_ip=client_ip)
    # A header, so the body stays the account as API.md lists it.
    response.headers[SIGNUP_TOKEN_HEADER] = signed_up.signup_token
    _not_to_be_stored(response)
    return signed_up.account


@router.post(
    "/verify-email",
    responses=problem_responses(InvalidCode, CodeExpired, TooManyAttempts, ValidationFailed,
                                TooManyRequests),
    description=(
        "Confirms the address with the mailed code and the sign-up's `signup_token`. A wrong "
        "code or token, an unknown address and an already verified one all answer 422 "
        "`invalid_code` (and 429 alike after five). Five wrong codes void a code (429 "
        "until a resend issues a new one); at most 20 codes per address a day. At most 30 "
        "attempts per client address per 15 minutes, else 429 `rate_limited`."
    ),
)
async def verify_email(body: VerifyEmailRequest, auth: AuthServiceDep,
                       client_ip: ClientIp) -> EmailVerified:
    await auth.verify_email(body.email, body.code, client_ip=client_ip,
                            signup_token=body.signup_token)
    return EmailVerified()


@router.post(
    "/verify-email/resend",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    responses=problem_responses(ValidationFailed, TooManyRequests),
    description=(
        "Always 202 with no body, whether or not the address has an account. A new code "
        "(replacing the old one) goes out at most once a minute per address. At most 10 "
        "resends per client address per hour (and a total per hour for everyone), else 429 "
        "`rate_limited`."
    ),
)
async def resend_verification(body: ResendRequest, auth: AuthServiceDep,
                              client_ip: ClientIp) -> Response:
    await auth.resend_verification(body.email, client_ip=client_ip)
    return Response(status_code=status.HTTP_202_ACCEPTED)


@router.post(
    "/login",
    responses=problem_responses(
        InvalidCredentials, EmailNotVerified, TooManyAttempts, ValidationFailed
    ),
    description=(
        "Exchanges email and password for an access token and a refresh token. Failed "
        "attempts are throttled per (email, client address) and per client address: past 10 "
        "failures for one email from one address, or 100 from one address, within 15 minutes, "
        "every attempt from there is 429 `too_many_attempts`, right password or not. Other "
        "addresses are not affected; IPv6 addresses count by their /64."
    ),
)
async def login(body: LoginRequest, auth: AuthServiceDep, client_ip: ClientIp,
                response: Response) -> TokenPair:
    _not_to_be_stored(response)
    return await auth.login(body.email, body.password, client_ip=client_ip)


@router.post(
    "/refresh",
    responses=problem_responses(InvalidToken, TokenExpired, TokenRevoked, ValidationFailed),
    description=(
        "Rotates the refresh token: the one sent stops working. Sending a used one again "
        "revokes its whole session (401 token_revoked)."
    ),
)
async def refresh(body: RefreshRequest, auth: AuthServiceDep, response: Response) -> TokenPair:
    _not_to_be_stored(response)
    return await auth.refresh(body.refresh_token)


def _not_to_be_stored(response: Response) -> None:
    """RFC 6749 5.1: no cache on the way may keep a response that carries tokens."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(Unauthorized),
    description="Revokes the caller's session: its access and refresh tokens stop working.",
)
async def logout(user_id: CurrentUser, session_id: CurrentSession, auth: AuthServiceDep) -> Response:
    await auth.logout(user_id, session_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@account_router.put(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(
        Unauthorized, WrongCurrentPassword, UserNotFound, ValidationFailed, TooManyAttempts
    ),
    description=(
        "Sets a new password and revokes every other session of the user; the caller's "
        "session stays signed in. A wrong current_password is 403 `invalid_credentials`, "
        "not 401: the caller's token is fine, and a 401 would make clients sign out. Wrong "
        "current passwords count as failed logins from the caller's address (429 "
        "`too_many_attempts` past the limit)."
    ),
)
async def change_my_password(
    body: PasswordChange, user_id: CurrentUser, session_id: CurrentSession, auth: AuthServiceDep,
    client_ip: ClientIp,
) -> Response:
    await auth.change_password(
        user_id, session_id,
        current_password=body.current_password, new_password=body.new_password,
        client_ip=client_ip,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@well_known_router.get(
    "/.well-known/jwks.json",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}, "description": "JSON Web Key Set"}},
    description="The Ed25519 public keys that verify access tokens (current and retiring).",
)
async def jwks(signer: TokenSignerDep) -> Response:
    return Response(
        content=signer.jwks_body,
        media_type="application/json",
        headers={"Cache-Control": "public, max-age=300"},
    )
