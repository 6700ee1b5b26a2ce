"""Comments as clients see them (what a client sends is posts.schemas.ContentIn)."""

from __future__ import annotations

from shared.schemas import ApiModel, UtcDatetime


class CommentOut(ApiModel):
    id: int
    post_id: int
    author_id: int
    content: str
    like_count: int
    created_at: UtcDatetime
    updated_at: UtcDatetime
