"""Posts as clients see them, and what a client sends to write one."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, StringConstraints

from shared.schemas import VISIBLE_CHARACTER, ApiModel, RequestModel, UtcDatetime, not_blank

MAX_CONTENT_LENGTH = 5000


# 1..5000 characters (code points), not all white space. Stored as sent. The pattern says the
# validator's rule in the schema, so that clients and fuzzers see it.
Content = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_CONTENT_LENGTH, pattern=VISIBLE_CHARACTER),
    AfterValidator(not_blank)
]


class ContentIn(RequestModel):
    content: Content


class PostOut(ApiModel):
    id: int
    author_id: int
    content: str
    like_count: int
    comment_count: int
    created_at: UtcDatetime
    updated_at: UtcDatetime
