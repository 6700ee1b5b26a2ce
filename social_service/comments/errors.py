"""The problems the comment routes answer with (an unknown post is posts.errors.PostNotFound)."""

from __future__ import annotations

from shared.errors import Forbidden, NotFound


class CommentNotFound(NotFound):
    title = "Comment not found"


class NotCommentAuthor(Forbidden):
    title = "Only the author may change this comment"
