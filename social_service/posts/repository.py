"""Every SQL statement of posts and post likes. Reads are prebuilt Core statements run on the
ReadSession (no transaction); changes run on the request session. Rows are plain mappings: a
row is all a response needs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import bindparam, delete, insert, select, update

from shared.pagination import Key, key_params, older_than
from shared.repository import Repository, execute_counted, execute_insert
from social_service.posts.models import Post, PostLike

POST_COLUMNS = (Post.id, Post.author_id, Post.content, Post.like_count, Post.comment_count,
                Post.created_at, Post.updated_at)
NEWEST_FIRST = (Post.created_at.desc(), Post.id.desc())

Lock = Literal["update", "share"]
Row = dict[str, Any]

POST_BY_ID = select(*POST_COLUMNS).where(Post.id == bindparam("post_id"))
AUTHOR_OF_POST = select(Post.author_id).where(Post.id == bindparam("post_id"))


def _page(*, by_author: bool, after_key: bool) -> Any:
    query = select(*POST_COLUMNS)
    if by_author:
        query = query.where(Post.author_id == bindparam("author_id"))
    if after_key:
        query = query.where(older_than(Post.created_at, Post.id))
    return query.order_by(*NEWEST_FIRST).limit(bindparam("limit"))


# (by author?, past a cursor?) -> the statement.
POST_PAGES = {(by_author, after_key): _page(by_author=by_author, after_key=after_key)
              for by_author in (False, True) for after_key in (False, True)}


class PostsRepository(Repository):
    async def get(self, post_id: int) -> Row | None:
        return (await self.reads.execute(POST_BY_ID, {"post_id": post_id})).first()

    async def exists(self, post_id: int) -> bool:
        return (await self.reads.execute(AUTHOR_OF_POST, {"post_id": post_id})).first() is not None

    async def page(self, *, author_id: int | None, before: Key | None, limit: int) -> list[Row]:
        """`limit` + 1 rows at most: the extra one says whether a next page exists."""
        statement = POST_PAGES[(author_id is not None, before is not None)]
        parameters = {"author_id": author_id, "limit": limit + 1, **key_params(before)}
        return (await self.reads.execute(statement, parameters)).all()

    # Writes, on the request session.

    async def insert(self, *, author_id: int, content: str, now: datetime) -> int:
        return await execute_insert(self.session, insert(Post).values(
            author_id=author_id, content=content, like_count=0, comment_count=0,
            created_at=now, updated_at=now,
        ))

    async def get_in_transaction(self, post_id: int) -> Row | None:
        """The post as this transaction sees it (its own uncommitted change included)."""
        row = (await self.session.execute(select(*POST_COLUMNS).where(Post.id == post_id))).first()
        return None if row is None else dict(row._mapping)

    async def author_of(self, post_id: int, *, lock: Lock) -> int | None:
        """The post's author, or None if there is no such post. Every writer that touches a post
        and then one of its comments locks the post first, so no two of them deadlock."""
        query = select(Post.author_id).where(Post.id == post_id)
        return await self.session.scalar(query.with_for_update(read=lock == "share"))

    async def update_content(self, post_id: int, content: str, *, now: datetime) -> None:
        await self.session.execute(
            update(Post).where(Post.id == post_id).values(content=content, updated_at=now)
        )

    async def delete(self, post_id: int) -> None:
        """Its likes, comments (and theirs) and activities go with it: ON DELETE CASCADE."""
        await self.session.execute(delete(Post).where(Post.id == post_id))

    async def add_like(self, post_id: int, user_id: int, *, now: datetime) -> bool:
        """True if this call added the like. IGNORE only ever meets the duplicate key: the caller
        holds the post locked, so the foreign key cannot fail."""
        statement = insert(PostLike).prefix_with("IGNORE").values(
            post_id=post_id, user_id=user_id, created_at=now)
        return await execute_counted(self.session, statement) == 1

    async def remove_like(self, post_id: int, user_id: int) -> bool:
        statement = delete(PostLike).where(PostLike.post_id == post_id, PostLike.user_id == user_id)
        return await execute_counted(self.session, statement) == 1

    async def add_to_like_count(self, post_id: int, delta: int) -> None:
        # In SQL, never read-modify-write: the row lock makes concurrent changes add up.
        await self.session.execute(
            update(Post).where(Post.id == post_id).values(like_count=Post.like_count + delta)
        )

    async def add_to_comment_count(self, post_id: int, delta: int) -> None:
        await self.session.execute(
            update(Post).where(Post.id == post_id).values(comment_count=Post.comment_count + delta)
        )
