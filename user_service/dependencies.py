"""What the lifespan builds once (keys, hasher pool, mailer, Redis) and the per-request services.

Every dependency is `async def`: FastAPI runs a plain `def` dependency in a worker thread, a
thread hop per dependency per request for what is only attribute access.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis

from shared.db import DbSession
from user_service.auth.mail import Mailer
from user_service.auth.passwords import PasswordHasher
from user_service.auth.service import AuthService
from user_service.auth.throttle import LoginThrottle
from user_service.auth.tokens import TokenSigner
from user_service.settings import Settings
from user_service.users.service import UsersService


@dataclass(frozen=True)
class Resources:
    settings: Settings
    redis: Redis
    signer: TokenSigner
    passwords: PasswordHasher
    mailer: Mailer
    throttle: LoginThrottle


async def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


AppResources = Annotated[Resources, Depends(get_resources)]


async def get_signer(resources: AppResources) -> TokenSigner:
    return resources.signer


async def get_auth_service(session: DbSession, resources: AppResources) -> AuthService:
    return AuthService(
        session=session,
        redis=resources.redis,
        settings=resources.settings,
        signer=resources.signer,
        passwords=resources.passwords,
        mailer=resources.mailer,
        throttle=resources.throttle,
    )


async def get_users_service(session: DbSession) -> UsersService:
    return UsersService(session)


Signer = Annotated[TokenSigner, Depends(get_signer)]
Auth = Annotated[AuthService, Depends(get_auth_service)]
Users = Annotated[UsersService, Depends(get_users_service)]
