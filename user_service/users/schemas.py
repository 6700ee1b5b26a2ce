"""The profile as clients see it, and the fields a user may edit."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    ConfigDict,
    HttpUrl,
    JsonValue,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)

from shared.schemas import VISIBLE_CHARACTER, ApiModel, RequestModel, UtcDatetime, not_blank

_HTTP_URL: TypeAdapter[HttpUrl] = TypeAdapter(HttpUrl)
# The column's size (users.profile_image_url).
MAX_URL_LENGTH = 2048


_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_OCTET = r"(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])"
# RFC 3986's pchar, less the quote (WHATWG percent-encodes it in a query).
_PCHAR = r"([A-Za-z0-9._~!$&()*+,;=:@-]|%[0-9A-Fa-f]{2})"
_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
# What a profile image URL may be, enforced here and published as the schema's pattern, so
# clients and fuzzers see the same rule: an http(s) scheme in any case; a host name whose last
# label starts with a letter (all digits would be read as an IPv4 address) or a dotted IPv4
# address; an optional port; then RFC 3986's path, query and fragment (a % starts an escape),
# in characters the normal form does not percent-encode (so its length stays what was sent,
# plus a "/" for an empty path).
IMAGE_URL_PATTERN = re.compile(
    rf"^[Hh][Tt][Tt][Pp][Ss]?://((({_LABEL})\.)*[A-Za-z]([A-Za-z0-9-]*[A-Za-z0-9])?"
    rf"|({_OCTET}\.){{3}}{_OCTET})(:{_PORT})?"
    rf"(/({_PCHAR}|/)*)?(\?({_PCHAR}|[/?])*)?(#({_PCHAR}|[/?])*)?$")


def _http_url(value: str) -> str:
    # Spaces and control or format characters (a newline, U+202E) make a URL that reads one
    # way and goes another; browsers strip or encode them differently. Refused, not repaired.
    if any(unicodedata.category(char)[0] in "CZ" for char in value):
        raise ValueError("must not contain spaces or control characters")
    # A URI is ASCII (RFC 3986, the schema's `format: uri`). A non-ASCII host would be stored
    # as its punycode (`https://Ï` as `https://xn--gda/`), a different string from the one
    # sent, and look-alike letters are how a link pretends to be another site: refused, and
    # the client sends the xn-- form and percent-encoded paths itself.
    if not value.isascii():
        raise ValueError("must be ASCII: give the host in its xn-- form and percent-encode the rest")
    if not IMAGE_URL_PATTERN.match(value):
        raise ValueError("must be an http(s) URL with a host name or IPv4 address and only "
                         "RFC 3986 characters (percent-encode the others)")
    # Stored in its normal form (lower-case scheme and host, default port dropped, "/" for an
    # empty path: RFC 3986's equivalent spellings), so one URL has one spelling.
    normal = str(_HTTP_URL.validate_python(value))
    if len(normal) > MAX_URL_LENGTH:
        raise ValueError(f"must be at most {MAX_URL_LENGTH} characters once normalised")
    return normal


# Not all white space: the pattern says the validator's rule in the schema too.
Name = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=VISIBLE_CHARACTER),
                 AfterValidator(not_blank)]
Greeting = Annotated[str, StringConstraints(max_length=500)]
# The schema says what the validator enforces, so generated clients and fuzzers agree with it.
ImageUrl = Annotated[
    str,
    StringConstraints(max_length=MAX_URL_LENGTH),
    AfterValidator(_http_url),
    # maxLength leaves room for the "/" the normal form adds to an empty path.
    WithJsonSchema({"type": "string", "format": "uri", "maxLength": MAX_URL_LENGTH - 1,
                    "pattern": IMAGE_URL_PATTERN.pattern,
                    "examples": ["https://cdn.example.com/avatars/ada.png"]}),
]


_ACCOUNT_EXAMPLE: dict[str, JsonValue] = {
    "id": 42, "email": "ada@example.com", "name": "Ada", "greeting": "Hello!",
    "profile_image_url": "https://cdn.example.com/avatars/ada.png", "email_verified": True,
    "created_at": "2026-12-01T09:00:00Z",
}


class Account(ApiModel):
    """The account as a sign-up answers it."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {**_ACCOUNT_EXAMPLE, "email_verified": False}]})

    id: int
    email: str
    name: str
    greeting: str | None
    profile_image_url: str | None
    email_verified: bool
    created_at: UtcDatetime


class Profile(Account):
    """The caller's own profile (GET and PATCH /users/me)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {**_ACCOUNT_EXAMPLE, "roles": ["seller"]}]})

    # Granted by an operator (python -m user_service.roles); `seller` lists products.
    roles: list[str]


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
        Name | None, WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 100,
                                     "pattern": VISIBLE_CHARACTER})
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
