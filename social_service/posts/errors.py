"""The problems the post routes answer with."""

from __future__ import annotations

from shared.errors import Forbidden, NotFound


class PostNotFound(NotFound):
    title = "Post not found"


class NotPostAuthor(Forbidden):
    title = "Only the author may change this post"
