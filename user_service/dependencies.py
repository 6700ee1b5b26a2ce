"""What user_service's lifespan builds once (keys, hasher pool, mailer, datastores) and the
dependencies that hand it and the per-request services to the routes.

Every dependency is `async def`: FastAPI runs a plain `def` dependency in a worker thread, a
thread hop per dependency per request for what is only attribute access.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession

from shared.dependencies import AppResources, ReadSessionDep, SessionDep, resources_of
from shared.lifespan import Datastores
from user_service.auth.limits import RequestLimiter
from user_service.auth.mail import Mailer
from user_service.auth.passwords import PasswordHasher
from user_service.auth.service import AuthService
from user_service.auth.throttle import LoginThrottle
from user_service.auth.tokens import TokenSigner
from user_service.settings import Settings
from user_service.users.service import UsersService


@dataclass(frozen=True, kw_only=True)
class Resources:
    settings: Settings
    datastores: Datastores
    signer: TokenSigner
    passwords: PasswordHasher
    mailer: Mailer
    throttle: LoginThrottle
    limiter: RequestLimiter


async def get_resources(resources: AppResources) -> Resources:
    return resources_of(resources, Resources)


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_signer(resources: ResourcesDep) -> TokenSigner:
    return resources.signer


async def get_auth_service(session: SessionDep, resources: ResourcesDep) -> AuthService:
    return auth_service_of(resources, session)


def auth_service_of(resources: Resources, session: AsyncSession) -> AuthService:
    """The service on `session`, for a route or a loop."""
    return AuthService(
        session=session,
        redis=resources.datastores.redis,
        settings=resources.settings,
        signer=resources.signer,
        passwords=resources.passwords,
        mailer=resources.mailer,
        throttle=resources.throttle,
        limiter=resources.limiter,
    )


async def get_users_reader(reads: ReadSessionDep) -> UsersService:
    return UsersService(reads=reads)


async def get_users_service(session: SessionDep) -> UsersService:
    return UsersService(session=session)


TokenSignerDep = Annotated[TokenSigner, Depends(get_signer)]
AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]
# Profile reads use no transaction; edits get the request session.
UsersReaderDep = Annotated[UsersService, Depends(get_users_reader)]
UsersServiceDep = Annotated[UsersService, Depends(get_users_service)]
