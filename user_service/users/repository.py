"""Every SQL statement of profiles."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.clock import utcnow
from user_service.users.models import User


class UsersRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: int) -> User | None:
        return await self.session.get(User, user_id)

    async def update_profile(self, user: User, changes: dict[str, Any]) -> None:
        for field, value in changes.items():
            setattr(user, field, value)
        user.updated_at = utcnow()
        await self.session.flush()
