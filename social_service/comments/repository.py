"""Every SQL statement of comments and comment likes: reads on the ReadSession, changes on the
request session (as in posts/repository.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update

from shared.pagination import Key, key_params, newer_than
from shared.repository import Repository, execute_counted, execute_insert
from social_service.comments.models import Comment, CommentLike
from social_service.db import AnyRow

COMMENT_COLUMNS = (Comment.id, Comment.post_id, Comment.author_id, Comment.content,
                   Comment.like_count, Comment.created_at, Comment.updated_at)


COMMENT_BY_ID = select(*COMMENT_COLUMNS).where(Comment.id == bindparam("comment_id"))
# Past a cursor or not -> a post's comments, oldest first.
COMMENT_PAGES = {
    after_key: select(*COMMENT_COLUMNS).where(
        Comment.post_id == bindparam("post_id"),
        *([newer_than(Comment.created_at, Comment.id)] if after_key else []),
    ).order_by(Comment.created_at, Comment.id).limit(bindparam("limit"))
    for after_key in (False, True)
}
Row = dict[str, Any]


class CommentsRepository(Repository):
    async def get(self, comment_id: int) -> Row | None:
        return (await self.reads.execute(COMMENT_BY_ID, {"comment_id": comment_id})).first()

    async def page(self, post_id: int, *, after: Key | None, limit: int) -> list[Row]:
        parameters = {"post_id": post_id, "limit": limit + 1, **key_params(after)}
        return (await self.reads.execute(COMMENT_PAGES[after is not None], parameters)).all()

    # Writes, on the request session.

    async def insert(self, *, post_id: int, author_id: int, content: str, now: datetime) -> int:
        return await execute_insert(self.session, insert(Comment).values(
            post_id=post_id, author_id=author_id, content=content, like_count=0,
            created_at=now, updated_at=now,
        ))

    async def get_in_transaction(self, comment_id: int) -> Row | None:
        result = await self.session.execute(
            select(*COMMENT_COLUMNS).where(Comment.id == comment_id))
        row = result.first()
        return None if row is None else dict(row._mapping)

    async def post_of(self, comment_id: int) -> int | None:
        return await self.session.scalar(select(Comment.post_id).where(Comment.id == comment_id))

    async def lock(self, comment_id: int) -> AnyRow | None:
        """(author_id, post_id) of the comment, locked for this transaction; None if it is gone."""
        result = await self.session.execute(
            select(Comment.author_id, Comment.post_id)
            .where(Comment.id == comment_id).with_for_update()
        )
        return result.first()

    async def update_content(self, comment_id: int, content: str, *, now: datetime) -> None:
        await self.session.execute(
            update(Comment).where(Comment.id == comment_id).values(content=content, updated_at=now)
        )

    async def delete(self, comment_id: int) -> None:
        """Its likes and activities go with it: ON DELETE CASCADE."""
        await self.session.execute(delete(Comment).where(Comment.id == comment_id))

    async def add_like(self, comment_id: int, user_id: int, *, now: datetime) -> bool:
        """True if this call added the like (the caller holds the comment locked)."""
        statement = insert(CommentLike).prefix_with("IGNORE").values(
            comment_id=comment_id, user_id=user_id, created_at=now)
        return await execute_counted(self.session, statement) == 1

    async def remove_like(self, comment_id: int, user_id: int) -> bool:
        statement = delete(CommentLike).where(CommentLike.comment_id == comment_id,
                                              CommentLike.user_id == user_id)
        return await execute_counted(self.session, statement) == 1

    async def add_to_like_count(self, comment_id: int, delta: int) -> None:
        await self.session.execute(update(Comment).where(Comment.id == comment_id)
                                   .values(like_count=Comment.like_count + delta))
