"""Every SQL statement of profiles: plain reads on a ReadSession (no transaction), changes on the
request session."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, func, select

from shared.clock import utcnow
from shared.repository import Repository
from user_service.roles.models import UserRole
from user_service.users.models import User

# The user's roles in one column ("seller", or NULL for none), so a profile stays one query.
_ROLES = (select(func.group_concat(UserRole.role.op("ORDER BY")(UserRole.role)))
          .where(UserRole.user_id == User.id).scalar_subquery().label("roles"))
# The columns a profile answer shows. Built once: constructing the statement per request (ORM
# attribute comparisons, a new cache key) cost more than a tenth of the route's CPU.
PROFILE_BY_ID = select(User.id, User.email, User.name, User.greeting, User.profile_image_url,
                       User.email_verified, User.created_at, _ROLES) \
    .where(User.id == bindparam("user_id"))
USER_ID_BY_ID = select(User.id).where(User.id == bindparam("user_id"))


class UsersRepository(Repository):
    async def get_profile(self, user_id: int) -> dict[str, Any] | None:
        row = (await self.reads.execute(PROFILE_BY_ID, {"user_id": user_id})).first()
        if row is not None:
            row["roles"] = row["roles"].split(",") if row["roles"] else []
        return row

    async def get_profile_in_session(self, user_id: int) -> dict[str, Any] | None:
        """The same, inside the request's transaction (after a change, before its commit)."""
        row = (await self.session.execute(PROFILE_BY_ID, {"user_id": user_id})).mappings().first()
        if row is None:
            return None
        profile = dict(row)
        profile["roles"] = profile["roles"].split(",") if profile["roles"] else []
        return profile

    async def get_for_update(self, user_id: int) -> User | None:
        return await self.session.get(User, user_id, with_for_update=True)

    async def exists(self, user_id: int) -> bool:
        return (await self.reads.execute(USER_ID_BY_ID, {"user_id": user_id})).first() is not None

    async def update_profile(self, user: User, changes: dict[str, Any]) -> None:
        for field, value in changes.items():
            setattr(user, field, value)
        user.updated_at = utcnow()
        await self.session.flush()
