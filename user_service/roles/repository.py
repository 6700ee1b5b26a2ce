"""Every SQL statement of roles."""

from __future__ import annotations

from sqlalchemy import bindparam, delete, select
from sqlalchemy.dialects.mysql import insert

from shared.clock import utcnow
from shared.repository import Repository, execute_counted
from user_service.roles.models import UserRole

ROLES_OF_USER = select(UserRole.role).where(UserRole.user_id == bindparam("user_id")) \
    .order_by(UserRole.role)


class RolesRepository(Repository):
    async def roles_of(self, user_id: int) -> list[str]:
        """On the request session (login and refresh read them inside their transaction)."""
        result = await self.session.execute(ROLES_OF_USER, {"user_id": user_id})
        return list(result.scalars())

    async def read_roles_of(self, user_id: int) -> list[str]:
        """On the read session, for the routes that only read."""
        rows = (await self.reads.execute(ROLES_OF_USER, {"user_id": user_id})).all()
        return [row["role"] for row in rows]

    async def grant(self, user_id: int, role: str) -> bool:
        """True if the user did not have the role before."""
        statement = insert(UserRole).values(user_id=user_id, role=role, granted_at=utcnow()) \
            .prefix_with("IGNORE")
        return await execute_counted(self.session, statement) > 0

    async def revoke(self, user_id: int, role: str) -> bool:
        """True if the user had the role."""
        statement = delete(UserRole).where(UserRole.user_id == user_id, UserRole.role == role)
        return await execute_counted(self.session, statement) > 0
