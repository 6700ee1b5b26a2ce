"""Request and response bodies of the sign-up, verification, login and token routes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, StringConstraints

from shared.schemas import RequestModel
from user_service.users.schemas import Account, Greeting, ImageUrl, Name


def _lower(value: str) -> str:
    return value.lower()


# Lower-cased here, once, so every query and Redis key sees one spelling of an address.
Email = Annotated[EmailStr, AfterValidator(_lower)]
Password = Annotated[str, StringConstraints(min_length=8, max_length=128)]
# Login and password change accept any stored password; the cap only bounds hashing work.
PresentedPassword = Annotated[str, StringConstraints(min_length=1, max_length=128)]
VerificationCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]


class SignupRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "email": "ada@example.com", "password": "correct horse battery", "name": "Ada",
        "greeting": "Hello!", "profile_image_url": "https://cdn.example.com/avatars/ada.png",
    }]})

    email: Email
    password: Password
    name: Name
    greeting: Greeting | None = None
    profile_image_url: ImageUrl | None = None


@dataclass(frozen=True, slots=True)
class SignedUp:
    """The sign-up's outcome: the account, and the token that proves to verify-email that the
    code is typed by whoever chose this password (the mail proves only the mailbox)."""

    account: Account
    signup_token: str


SignupToken = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class VerifyEmailRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "email": "ada@example.com", "code": "123456",
    }]})

    email: Email
    code: VerificationCode
    # The sign-up's token (its answer's Signup-Token header). Clients always send it; it is
    # required when a later sign-up replaced one whose code was still live (two parties
    # claimed the address).
    signup_token: SignupToken | None = None


class EmailVerified(BaseModel):
    email_verified: Literal[True] = True


class ResendRequest(RequestModel):
    email: Email


class LoginRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "email": "ada@example.com", "password": "correct horse battery",
    }]})

    email: Email
    password: PresentedPassword


class RefreshRequest(RequestModel):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=512)]


class TokenPair(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "access_token": "eyJhbGciOiJFZERTQSIsImtpZCI6Ii4uLiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJl",
        "refresh_token": "Zk9xY2JpV3FpTnN1T2t3", "token_type": "bearer", "expires_in": 900,
    }]})

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class PasswordChange(RequestModel):
    current_password: PresentedPassword
    new_password: Password
