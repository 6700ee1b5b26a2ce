"""payment_service application: the lifespan builds its Resources (datastores, the order_service
client, the simulated card processor) and runs the outbox and interrupted-payment loops."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from payment_service.clients import OrdersClient
from payment_service.dependencies import Resources
from payment_service.payments.processor import SimulatedProcessor
from payment_service.payments.router import internal_router
from payment_service.payments.router import router as payments_router
from payment_service.payments.service import PaymentsService
from payment_service.payments.tasks import deliver_payment_outcomes, fail_interrupted_payments
from payment_service.settings import Settings, get_settings
from shared.app import create_service_app
from shared.http import service_client
from shared.idempotency import IdempotencyKeys
from shared.lifespan import open_datastores
from shared.logging import configure_logging
from shared.loops import running


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("payment_service", settings.log_level)

    @asynccontextmanager
    async def open_resources() -> AsyncIterator[Resources]:
        async with AsyncExitStack() as stack:
            datastores = await stack.enter_async_context(open_datastores(settings))
            orders = await stack.enter_async_context(service_client(
                "order_service", settings.order_service_url, signing_key=settings.identity_key(),
                timeout_seconds=settings.call_timeout_seconds))
            payments = PaymentsService(
                sessions=datastores.sessionmaker, reads=datastores.reads,
                orders=OrdersClient(orders),
                processor=SimulatedProcessor(failure_rate=settings.failure_rate),
                keys=IdempotencyKeys(datastores.redis, namespace="payments"),
                fault_point=settings.fault_point)
            async with running(
                deliver_payment_outcomes(
                    payments, interval_seconds=settings.outbox_interval_seconds),
                fail_interrupted_payments(
                    payments, interval_seconds=settings.stale_interval_seconds),
            ):
                yield Resources(settings=settings, datastores=datastores, payments=payments)

    return create_service_app(
        service="payment_service",
        title="Payment service",
        resources=open_resources,
        routers=[payments_router, internal_router],
    )
