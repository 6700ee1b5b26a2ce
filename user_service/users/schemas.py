"""The profile as clients see it, and the fields a user may edit."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    HttpUrl,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)

from shared.schemas import ApiModel, RequestModel, UtcDatetime

_HTTP_URL: TypeAdapter[HttpUrl] = TypeAdapter(HttpUrl)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must contain a visible character")
    return value


def _http_url(value: str) -> str:
    # Validated as an http(s) URL but stored as sent: pydantic's normal form (a trailing
    # slash added to a bare host) would hand clients back a string they did not send.
    _HTTP_URL.validate_python(value)
    return value


Name = Annotated[str, StringConstraints(min_length=1, max_length=100), AfterValidator(_not_blank)]
Greeting = Annotated[str, StringConstraints(max_length=500)]
# The schema says what the validator enforces, so generated clients and fuzzers agree with it.
ImageUrl = Annotated[
    str,
    StringConstraints(max_length=2048),
    AfterValidator(_http_url),
    WithJsonSchema({"type": "string", "format": "uri", "pattern": "^https?://", "maxLength": 2048}),
]


class Profile(ApiModel):
    id: int
    email: str
    name: str
    greeting: str | None
    profile_image_url: str | None
    email_verified: bool
    created_at: UtcDatetime


class PublicProfile(ApiModel):
    id: int
    name: str
    greeting: str | None
    profile_image_url: str | None


class UserRef(ApiModel):
    """The internal answer to "does this user exist" (shared.contracts.INTERNAL_USER_PATH)."""

    id: int


class ProfileUpdate(RequestModel):
    """Absent fields stay as they are; an explicit null clears greeting or profile_image_url."""

    # Optional but never null: the schema says so, the validator below enforces it.
    name: Annotated[
        Name | None, WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 100})
    ] = None
    greeting: Greeting | None = None
    profile_image_url: ImageUrl | None = None

    @model_validator(mode="after")
    def _name_cannot_be_cleared(self) -> ProfileUpdate:
        if "name" in self.model_fields_set and self.name is None:
            raise ValueError("name cannot be null")
        return self

    def changes(self) -> dict[str, Any]:
        return self.model_dump(include=self.model_fields_set)
