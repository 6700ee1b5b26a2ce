"""Granting and revoking roles: operator actions (user_service.roles.__main__), never a public
route.

A role travels in the access token (the `roles` claim), which the gateway forwards to services
under its signature. A grant therefore shows from the user's next login or refresh; a revocation
must not wait that long, so it also revokes every session of the user: their tokens stop at the
gateway at once, and the next login carries no role.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from shared.contracts import ROLES
from user_service.auth.repository import AuthRepository
from user_service.auth.revocation import publish_revoked_sessions
from user_service.roles.repository import RolesRepository
from user_service.users.errors import UserNotFound


class UnknownRole(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class RoleChange:
    user_id: int
    changed: bool
    sessions_revoked: int = 0


def _known(role: str) -> str:
    if role not in ROLES:
        raise UnknownRole(f"unknown role {role!r}; known roles: {', '.join(sorted(ROLES))}")
    return role


async def grant_role(session: AsyncSession, email: str, role: str) -> RoleChange:
    """Flushes; the caller commits."""
    user = await AuthRepository(session).get_user_by_email(email.lower())
    if user is None:
        raise UserNotFound()
    changed = await RolesRepository(session=session).grant(user.id, _known(role))
    return RoleChange(user_id=user.id, changed=changed)


async def revoke_role(session: AsyncSession, redis: Redis, email: str, role: str, *,
                      access_token_ttl_seconds: int) -> RoleChange:
    """Commits itself: the sessions' revocation is published only once it is durable."""
    user = await AuthRepository(session).get_user_by_email(email.lower())
    if user is None:
        raise UserNotFound()
    changed = await RolesRepository(session=session).revoke(user.id, _known(role))
    revoked: list[str] = []
    if changed:
        revoked = await AuthRepository(session).revoke_other_sessions(
            user_id=user.id, keep_session_id=None)
    await session.commit()
    await publish_revoked_sessions(redis, revoked,
                                   access_token_ttl_seconds=access_token_ttl_seconds)
    return RoleChange(user_id=user.id, changed=changed, sessions_revoked=len(revoked))
