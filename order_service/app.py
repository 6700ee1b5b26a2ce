"""order_service application: the lifespan builds its Resources (datastores, clients of
stock_service and payment_service) and runs the expiry, settle and orphan-hold loops."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from order_service.clients import PaymentsClient, StockClient
from order_service.dependencies import Resources
from order_service.orders.fast_refusal import SoldOutFastPath
from order_service.orders.ids import OrderIds
from order_service.orders.router import internal_router
from order_service.orders.router import router as orders_router
from order_service.orders.service import OrdersService, Timing
from order_service.orders.tasks import (
    expire_unpaid_orders,
    release_orphan_holds,
    settle_order_effects,
)
from order_service.settings import Settings, get_settings
from shared.app import create_service_app
from shared.http import service_client
from shared.idempotency import IdempotencyKeys
from shared.lifespan import open_datastores
from shared.logging import configure_logging
from shared.loops import running


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("order_service", settings.log_level)

    @asynccontextmanager
    async def open_resources() -> AsyncIterator[Resources]:
        async with AsyncExitStack() as stack:
            datastores = await stack.enter_async_context(open_datastores(settings))
            stock = await stack.enter_async_context(service_client(
                "stock_service", settings.stock_service_url, signing_key=settings.identity_key(),
                timeout_seconds=settings.call_timeout_seconds, max_connections=256))
            payments = await stack.enter_async_context(service_client(
                "payment_service", settings.payment_service_url, signing_key=settings.identity_key(),
                timeout_seconds=settings.call_timeout_seconds))
            orders = OrdersService(
                sessions=datastores.sessionmaker, reads=datastores.reads,
                stock=StockClient(stock), payments=PaymentsClient(payments),
                ids=OrderIds(datastores.sessionmaker),
                keys=IdempotencyKeys(datastores.redis, namespace="orders"),
                timing=Timing(
                    payment_ttl=timedelta(seconds=settings.payment_ttl_seconds),
                    lease=timedelta(seconds=settings.payment_lease_seconds),
                    sold_out_memory=settings.sold_out_memory_seconds,
                    orphan_after=timedelta(seconds=settings.orphan_hold_after_seconds),
                    reserves_in_flight=settings.reserves_in_flight_per_product,
                    reserve_wait_seconds=settings.call_timeout_seconds),
                fault_point=settings.fault_point)
            try:
                async with running(
                    expire_unpaid_orders(
                        orders, interval_seconds=settings.expiry_interval_seconds),
                    settle_order_effects(
                        orders, interval_seconds=settings.settle_interval_seconds),
                    release_orphan_holds(
                        orders, interval_seconds=settings.orphan_interval_seconds),
                ):
                    yield Resources(settings=settings, datastores=datastores, orders=orders)
            finally:
                await orders.drain()

    return create_service_app(
        service="order_service",
        title="Order service",
        resources=open_resources,
        routers=[orders_router, internal_router],
        front=[SoldOutFastPath],
    )
