"""user_service application: the lifespan builds its Resources (datastores, signing keys, hasher
pool, mailer, throttles) and runs the background loops (purge, revocation watch)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial

from fastapi import FastAPI

from shared.app import create_service_app
from shared.lifespan import open_datastores
from shared.logging import configure_logging
from shared.loops import running
from user_service.auth.limits import RateLimits, RequestLimiter
from user_service.auth.mail import Mailer
from user_service.auth.passwords import PasswordHasher
from user_service.auth.router import account_router, well_known_router
from user_service.auth.router import router as auth_router
from user_service.auth.tasks import (
    keep_revocations_published,
    purge_expired_sign_in_state_periodically,
    send_delayed_codes_periodically,
)
from user_service.auth.throttle import LoginFailureMetrics, LoginThrottle
from user_service.auth.tokens import TokenSigner
from user_service.dependencies import Resources, auth_service_of
from user_service.settings import Settings, get_settings
from user_service.users.router import internal_router as internal_users_router
from user_service.users.router import router as users_router


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("user_service", settings.log_level)
    # Made with the app, not in the lifespan: /metrics is wired up before the app starts.
    login_failures = LoginFailureMetrics()

    @asynccontextmanager
    async def open_resources() -> AsyncIterator[Resources]:
        # A bad or missing key fails the start, not the first login.
        signer = TokenSigner.from_settings(settings)
        with ThreadPoolExecutor(
            max_workers=settings.password_hash_workers, thread_name_prefix="password-hash"
        ) as executor:
            passwords = await PasswordHasher.create(executor)
            # Opened inside the pool, so after-commit work is drained before the pool closes.
            async with open_datastores(settings) as datastores:
                resources = Resources(
                    settings=settings,
                    datastores=datastores,
                    signer=signer,
                    passwords=passwords,
                    mailer=Mailer(settings),
                    throttle=LoginThrottle(
                        datastores.redis,
                        max_failures_per_email=settings.login_max_failures_per_email,
                        max_failures_per_ip=settings.login_max_failures_per_ip,
                        window_seconds=settings.login_failure_window_seconds,
                        metrics=login_failures,
                        slowed_interval_seconds=settings.login_slowed_interval_seconds,
                        known_pair_seconds=settings.login_known_pair_seconds,
                    ),
                    limiter=RequestLimiter(datastores.redis, RateLimits(
                        signup_per_address=settings.signup_max_per_address,
                        resend_per_address=settings.resend_max_per_address,
                        verify_per_address=settings.verify_max_per_address,
                        code_failures_per_day=settings.verification_max_failures_per_day,
                        mail_per_hour=settings.mail_max_per_hour,
                    )),
                )
                stop_watching = asyncio.Event()
                revocations = asyncio.create_task(keep_revocations_published(
                    datastores.sessionmaker, datastores.redis, stop=stop_watching,
                    access_token_ttl_seconds=settings.access_token_ttl_seconds,
                    interval_seconds=settings.revocation_watch_interval_seconds,
                ))
                try:
                    async with (
                        running(purge_expired_sign_in_state_periodically(
                            datastores.sessionmaker,
                            refresh_token_ttl=timedelta(
                                seconds=settings.refresh_token_ttl_seconds),
                            interval_seconds=settings.purge_interval_seconds,
                        )),
                        running(send_delayed_codes_periodically(
                            datastores.sessionmaker, datastores.after_commit, resources.limiter,
                            partial(auth_service_of, resources),
                            interval_seconds=settings.mail_delayed_interval_seconds,
                        )),
                    ):
                        yield resources
                finally:
                    # Stopped, not cancelled: a cancel could land inside a query (see the task).
                    stop_watching.set()
                    await revocations

    return create_service_app(
        service="user_service",
        title="User service",
        resources=open_resources,
        routers=[auth_router, account_router, users_router, well_known_router, internal_users_router],
        collectors=[login_failures.failures, login_failures.on_targeted_accounts],
    )
