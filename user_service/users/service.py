"""Profiles: reading one's own and others', editing one's own."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from user_service.users.errors import UserNotFound
from user_service.users.models import User
from user_service.users.repository import UsersRepository
from user_service.users.schemas import ProfileUpdate


class UsersService:
    def __init__(self, session: AsyncSession) -> None:
        self.repository = UsersRepository(session)

    async def get_profile(self, user_id: int) -> User:
        user = await self.repository.get(user_id)
        if user is None:
            raise UserNotFound()
        return user

    async def update_profile(self, user_id: int, update: ProfileUpdate) -> User:
        user = await self.get_profile(user_id)
        changes = update.changes()
        if changes:
            await self.repository.update_profile(user, changes)
        return user
