"""payment_service application: the lifespan builds its Resources (datastores, the order_service
client, the card processor's client) and runs the outbox and interrupted-payment loops."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from payment_service.clients import OrdersClient
from payment_service.dependencies import Resources
from payment_service.payments.charging import PaymentCharging
from payment_service.payments.errors import ProcessorUnavailable
from payment_service.payments.outcomes import PaymentOutcomes
from payment_service.payments.processor import Attempts, HttpProcessor
from payment_service.payments.recovery import PaymentRecovery
from payment_service.payments.refunds import PaymentRefunds
from payment_service.payments.repository import PaymentRepository
from payment_service.payments.router import internal_router, webhook_router
from payment_service.payments.router import router as payments_router
from payment_service.payments.tasks import deliver_payment_outcomes, fail_interrupted_payments
from payment_service.settings import Settings, get_settings
from shared.app import create_service_app
from shared.db import Transactions
from shared.http import service_client
from shared.idempotency import IdempotencyKeys
from shared.lifespan import open_datastores
from shared.logging import configure_logging
from shared.loops import running
from shared.sale_metrics import LOOPS, PaymentMetrics, bind_redis_probe

logger = logging.getLogger("payment_service")


async def refuse_simulator_in_production(processor: HttpProcessor, settings: Settings) -> None:
    """Production charges real cards: a processor that says it is the simulator (or does not
    answer at all) is refused unless PAYMENT_ALLOW_SIMULATED_PROCESSOR says otherwise; one with
    no /v1/processor route is not the simulator."""
    if not settings.is_production() or settings.allow_simulated_processor:
        return
    try:
        info = await processor.info()
    except ProcessorUnavailable as error:
        raise RuntimeError("production: the card processor at PAYMENT_PROCESSOR_URL did not "
                           "say what it is; refusing to start") from error
    if info is not None and info.simulated:
        raise RuntimeError("production: PAYMENT_PROCESSOR_URL is the card processor simulator; "
                           "set PAYMENT_ALLOW_SIMULATED_PROCESSOR=true if that is meant")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("payment_service", settings.log_level)
    # Made with the app, not in the lifespan: /metrics is wired up before the app starts.
    metrics = PaymentMetrics()

    @asynccontextmanager
    async def open_resources() -> AsyncIterator[Resources]:
        async with AsyncExitStack() as stack:
            datastores = await stack.enter_async_context(open_datastores(settings))
            orders = await stack.enter_async_context(service_client(
                "order_service", settings.order_service_url,
                signer=settings.identity_signer("payment_service"),
                timeout_seconds=settings.call_timeout_seconds, hosts=settings.service_hosts))
            # Outside the system: nothing it is sent is signed.
            processor = HttpProcessor(
                await stack.enter_async_context(service_client(
                    "card_processor", settings.processor_url, signer=None,
                    timeout_seconds=settings.processor_timeout_seconds,
                    hosts=settings.service_hosts)),
                attempts=Attempts(count=settings.processor_attempts,
                                  timeout_seconds=settings.processor_timeout_seconds),
                metrics=metrics)
            await refuse_simulator_in_production(processor, settings)
            transactions = Transactions(datastores.sessionmaker, PaymentRepository)
            orders_client = OrdersClient(orders)
            outcomes = PaymentOutcomes(transactions=transactions, reads=datastores.reads,
                                       orders=orders_client,
                                       processor=processor, metrics=metrics)
            charging = PaymentCharging(
                transactions=transactions, reads=datastores.reads, orders=orders_client,
                processor=processor, outcomes=outcomes,
                # A namespace of its own since fingerprints became HMACs: the plain hashes
                # kept before are never compared (and expire with their keys).
                keys=IdempotencyKeys(datastores.redis, namespace="payments-hmac",
                                     fingerprint_secret=settings.fingerprint_key()),
                budget_seconds=settings.budget_seconds)
            refunds = PaymentRefunds(transactions=transactions, reads=datastores.reads,
                                     processor=processor, metrics=metrics)
            recovery = PaymentRecovery(
                transactions=transactions, reads=datastores.reads, outcomes=outcomes,
                stale_after=timedelta(seconds=settings.stale_after_seconds))
            metrics.oldest_pending.bind(recovery.oldest_pending_seconds)
            bind_redis_probe(metrics.redis_up, datastores.redis.ping)
            stack.callback(metrics.oldest_pending.bind, None)
            stack.callback(bind_redis_probe, metrics.redis_up, None)
            async with running(
                deliver_payment_outcomes(
                    recovery, interval_seconds=settings.outbox_interval_seconds),
                fail_interrupted_payments(
                    recovery, interval_seconds=settings.stale_interval_seconds),
            ):
                yield Resources(settings=settings, datastores=datastores, charging=charging,
                                outcomes=outcomes, refunds=refunds, recovery=recovery)
                await charging.keys.drain(timeout=settings.budget_seconds)

    return create_service_app(
        service="payment_service",
        title="Payment service",
        resources=open_resources,
        routers=[payments_router, internal_router, webhook_router],
        collectors=[*metrics.collectors(), *LOOPS.collectors()],
    )
