"""`python -m user_service.roles grant|revoke EMAIL ROLE`: the operator's command for roles (today
`seller`, which lists products). Reads the service's own settings from the environment
(USER_DATABASE_URL, USER_REDIS_URL), as the service would. A revocation signs the user out
everywhere at once (see user_service/roles/service.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from redis.asyncio import Redis

from shared.contracts import ROLES
from shared.db import create_engine, create_sessionmaker
from user_service.roles.service import RoleChange, UnknownRole, grant_role, revoke_role
from user_service.settings import get_settings
from user_service.users.errors import UserNotFound


async def change(action: str, email: str, role: str) -> RoleChange:
    settings = get_settings()
    engine = create_engine(settings.database_url, pool_size=1)
    redis = Redis.from_url(settings.redis_url)
    try:
        async with create_sessionmaker(engine)() as session:
            if action == "grant":
                result = await grant_role(session, email, role)
                await session.commit()
                return result
            return await revoke_role(session, redis, email, role,
                                     access_token_ttl_seconds=settings.access_token_ttl_seconds)
    finally:
        await redis.aclose()
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m user_service.roles",
                                     description="Grant or revoke a user's role.")
    parser.add_argument("action", choices=("grant", "revoke"))
    parser.add_argument("email")
    parser.add_argument("role", choices=sorted(ROLES))
    args = parser.parse_args(argv)
    try:
        result = asyncio.run(change(args.action, args.email, args.role))
    except UserNotFound:
        print(f"no account with the address {args.email}", file=sys.stderr)
        return 1
    except UnknownRole as unknown:
        print(unknown, file=sys.stderr)
        return 2
    done = "granted" if args.action == "grant" else "revoked"
    state = done if result.changed else f"already {done}"
    extra = (f"; {result.sessions_revoked} session(s) signed out"
             if result.sessions_revoked else "")
    print(f"{args.role} {state} for user {result.user_id} ({args.email}){extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
