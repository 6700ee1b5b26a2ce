"""Types every API shares: UTC timestamps with a Z, cursor pages."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Generic, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
)

# A character that is not white space by any of the three regex engines that read a schema's
# pattern (JSON Schema's ECMA-262, Python's re, pydantic's Rust regex): their \s differ on
# U+001C-U+001F, U+0085 and U+FEFF, which are all counted as white space here. A text field
# that must not be all white space carries it as its pattern and checks it with not_blank.
VISIBLE_CHARACTER = r"[^\s\x1c-\x1f\x85\ufeff]"
_VISIBLE = re.compile(VISIBLE_CHARACTER)


def not_blank(value: str) -> str:
    if _VISIBLE.search(value) is None:
        raise ValueError("must contain a visible character")
    return value


def to_utc_z(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


UtcDatetime = Annotated[datetime, PlainSerializer(to_utc_z, return_type=str, when_used="json")]


def _iso_text_only(value: object) -> object:
    # Pydantic's lax mode reads a JSON number as epoch seconds; the contract's times are
    # ISO-8601 text, and a number is a wrong type like any other. Python code (tests, internal
    # callers) may still hand over a datetime.
    if isinstance(value, (str, datetime)):
        return value
    raise ValueError("must be an ISO-8601 time with a zone, as a string")


def _to_naive_utc(value: datetime) -> datetime:
    # Stored as naive UTC in DATETIME(6), compared as epoch milliseconds in Redis: years before
    # 1970 or past 9999 would be a 500 from either, so they are a 422 here. So is a time that is
    # in range as written but not in UTC (9999-12-31T23:59:59-05:00): converting it overflows.
    try:
        naive = value.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        raise ValueError("must be between 1970 and 9999") from None
    if not 1970 <= naive.year <= 9999:
        raise ValueError("must be between 1970 and 9999")
    return naive


# A time a client sends: ISO-8601 with a zone (Z or an offset), kept as naive UTC. A time with
# no zone is refused rather than guessed.
UtcDatetimeIn = Annotated[
    AwareDatetime,
    BeforeValidator(_iso_text_only),
    AfterValidator(_to_naive_utc),
    PlainSerializer(to_utc_z, return_type=str, when_used="json"),
]

T = TypeVar("T")


class ApiModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class RequestModel(BaseModel):
    """Request bodies reject unknown fields so a typo is a 422, not a silent no-op."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(default=None)
