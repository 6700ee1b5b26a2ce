"""Comments: writing on a post, editing and deleting one's own, reading a post's, liking.

Lock order, the same in every writer: the post, then the comment. A post's deletion locks the
post and then (by cascade) its comments; a comment writer that took them the other way round
could deadlock with it.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from shared.clock import utcnow
from shared.pagination import Key, page_of, row_key
from shared.reads import ReadSession
from shared.schemas import Page
from social_service.activities.models import ActivityType
from social_service.activities.repository import ActivitiesRepository
from social_service.comments.errors import CommentNotFound, NotCommentAuthor
from social_service.comments.repository import CommentsRepository
from social_service.comments.schemas import CommentOut
from social_service.db import AnyRow
from social_service.posts.errors import PostNotFound
from social_service.posts.repository import Lock, PostsRepository


class CommentsService:
    """Made with `reads` to read (no transaction) or with `session` to write."""

    def __init__(self, *, reads: ReadSession | None = None,
                 session: AsyncSession | None = None) -> None:
        self.comments = CommentsRepository(reads=reads, session=session)
        self.posts = PostsRepository(reads=reads, session=session)
        self.activities = ActivitiesRepository(session=session)

    async def create(self, user_id: int, post_id: int, content: str) -> CommentOut:
        post_author_id = await self.posts.author_of(post_id, lock="update")
        if post_author_id is None:
            raise PostNotFound()
        now = utcnow()
        comment_id = await self.comments.insert(post_id=post_id, author_id=user_id,
                                                content=content, now=now)
        await self.posts.add_to_comment_count(post_id, +1)
        await self.activities.record(ActivityType.COMMENT_CREATED, actor_id=user_id,
                                     target_id=comment_id, owner_id=post_author_id,
                                     post_id=post_id, comment_id=comment_id, created_at=now)
        return CommentOut(id=comment_id, post_id=post_id, author_id=user_id, content=content,
                          like_count=0, created_at=now, updated_at=now)

    async def get(self, comment_id: int) -> CommentOut:
        row = await self.comments.get(comment_id)
        if row is None:
            raise CommentNotFound()
        return CommentOut.model_validate(row)

    async def list(self, post_id: int, *, cursor: str | None, limit: int) -> Page[CommentOut]:
        after = Key.from_cursor(cursor)
        if not await self.posts.exists(post_id):
            raise PostNotFound()
        rows = await self.comments.page(post_id, after=after, limit=limit)
        items, next_cursor = page_of(rows, limit, row_key)
        return Page(items=[CommentOut.model_validate(row) for row in items], next_cursor=next_cursor)

    async def edit(self, user_id: int, comment_id: int, content: str) -> CommentOut:
        # Only the comment's row changes, so only it is locked (no post lock to order against).
        self._check_author(user_id, await self.comments.lock(comment_id))
        await self.comments.update_content(comment_id, content, now=utcnow())
        row = await self.comments.get_in_transaction(comment_id)
        assert row is not None, "the comment is locked by this transaction"
        return CommentOut.model_validate(row)

    async def delete(self, user_id: int, comment_id: int) -> None:
        comment = await self._lock_with_post(comment_id, post_lock="update")
        self._check_author(user_id, comment)
        await self.comments.delete(comment_id)
        await self.posts.add_to_comment_count(comment.post_id, -1)

    async def like(self, user_id: int, comment_id: int) -> None:
        # The post is only read-locked: likes of different comments of one post run side by side.
        comment = await self._lock_with_post(comment_id, post_lock="share")
        now = utcnow()
        if await self.comments.add_like(comment_id, user_id, now=now):
            await self.comments.add_to_like_count(comment_id, +1)
            await self.activities.record(ActivityType.COMMENT_LIKED, actor_id=user_id,
                                         target_id=comment_id, owner_id=comment.author_id,
                                         post_id=comment.post_id, comment_id=comment_id,
                                         created_at=now)

    async def unlike(self, user_id: int, comment_id: int) -> None:
        await self._lock_with_post(comment_id, post_lock="share")
        if await self.comments.remove_like(comment_id, user_id):
            await self.comments.add_to_like_count(comment_id, -1)
            await self.activities.remove(ActivityType.COMMENT_LIKED, actor_id=user_id,
                                         target_id=comment_id)

    async def _lock_with_post(self, comment_id: int, *, post_lock: Lock) -> AnyRow:
        """Locks the comment's post, then the comment (see the module docstring)."""
        post_id = await self.comments.post_of(comment_id)
        if post_id is None or await self.posts.author_of(post_id, lock=post_lock) is None:
            raise CommentNotFound()
        comment = await self.comments.lock(comment_id)
        if comment is None:
            raise CommentNotFound()
        return comment

    @staticmethod
    def _check_author(user_id: int, comment: AnyRow | None) -> None:
        if comment is None:
            raise CommentNotFound()
        if comment.author_id != user_id:
            raise NotCommentAuthor()
