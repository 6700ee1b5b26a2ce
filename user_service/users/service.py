"""Profiles: reading one's own and others', editing one's own."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.reads import ReadSession
from user_service.users.errors import UserNotFound
from user_service.users.repository import UsersRepository
from user_service.users.schemas import ProfileUpdate


class UsersService:
    def __init__(self, *, reads: ReadSession | None = None,
                 session: AsyncSession | None = None) -> None:
        self.repository = UsersRepository(reads=reads, session=session)

    async def get_profile(self, user_id: int) -> dict[str, Any]:
        profile = await self.repository.get_profile(user_id)
        if profile is None:
            raise UserNotFound()
        return profile

    async def require_user(self, user_id: int) -> None:
        """Only whether the account exists, for other services (no profile is loaded)."""
        if not await self.repository.exists(user_id):
            raise UserNotFound()

    async def update_profile(self, user_id: int, update: ProfileUpdate) -> dict[str, Any]:
        # Locked: two concurrent edits apply one after the other, each answering its own result.
        user = await self.repository.get_for_update(user_id)
        if user is None:
            raise UserNotFound()
        changes = update.changes()
        if changes:
            await self.repository.update_profile(user, changes)
        profile = await self.repository.get_profile_in_session(user_id)
        if profile is None:
            raise UserNotFound()
        return profile
