"""The problems the profile routes answer with."""

from __future__ import annotations

from shared.errors import NotFound


class UserNotFound(NotFound):
    title = "User not found"
