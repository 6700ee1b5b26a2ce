"""The problems the follow routes answer with."""

from __future__ import annotations

from shared.errors import NotFound, ValidationFailed


class UserNotFound(NotFound):
    title = "User not found"


class CannotFollowYourself(ValidationFailed):
    title = "You cannot follow yourself"

    def __init__(self) -> None:
        super().__init__("A user cannot follow or unfollow themselves.", loc=("path", "user_id"))
