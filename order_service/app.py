"""order_service application: the lifespan builds its Resources (datastores, clients of
stock_service and payment_service, admission and the three parts of orders) and runs the
expiry, settle and orphan-hold loops; admission's layer stands in front of the router."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from order_service.clients import PaymentsClient, StockClient
from order_service.dependencies import Resources
from order_service.orders.admission import OrderAdmission, OrderAdmissionFront
from order_service.orders.creation import OrderCreation, create_time_budget
from order_service.orders.drain import LineDrain
from order_service.orders.effects import OrderEffects
from order_service.orders.expiry import OrderExpiry
from order_service.orders.ids import OrderIds
from order_service.orders.line import OPEN_TOPIC, TICKETS_TOPIC, OrderLine
from order_service.orders.metrics import line_length_reader
from order_service.orders.repository import OrderRepository
from order_service.orders.router import internal_router
from order_service.orders.router import router as orders_router
from order_service.orders.scripts import LineScripts
from order_service.orders.tasks import (
    expire_unpaid_orders,
    release_orphan_holds,
    settle_order_effects,
    sweep_lines,
)
from order_service.orders.tickets import TicketReads
from order_service.orders.transitions import OrderTransitions
from order_service.settings import Settings, get_settings
from shared.app import create_service_app
from shared.broadcast import Channels, Subscription
from shared.db import Transactions
from shared.edge_answers import ANSWERS_TOPIC
from shared.edge_finals import FINALS_TOPIC
from shared.http import service_client
from shared.idempotency import IdempotencyKeys, fingerprint
from shared.lifespan import open_datastores
from shared.logging import configure_logging
from shared.loops import running
from shared.sale_metrics import LOOPS, OrderMetrics, bind_redis_probe
from shared.sold_out import InFlightLimit, SoldOutMemory
from shared.stock_levels import LEVELS_TOPIC


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("order_service", settings.log_level)
    # Made with the app, not in the lifespan: /metrics is wired up before the app starts.
    metrics = OrderMetrics()

    @asynccontextmanager
    async def open_resources() -> AsyncIterator[Resources]:
        signer = settings.identity_signer("order_service")
        async with AsyncExitStack() as stack:
            datastores = await stack.enter_async_context(open_datastores(settings))
            stock = await stack.enter_async_context(service_client(
                "stock_service", settings.stock_service_url, signer=signer,
                timeout_seconds=settings.call_timeout_seconds, max_connections=256,
                hosts=settings.service_hosts))
            payments = await stack.enter_async_context(service_client(
                "payment_service", settings.payment_service_url, signer=signer,
                timeout_seconds=settings.call_timeout_seconds, hosts=settings.service_hosts))
            transactions = Transactions(datastores.sessionmaker, OrderRepository)
            bind_redis_probe(metrics.redis_up, datastores.redis.ping)
            stack.callback(bind_redis_probe, metrics.redis_up, None)
            stock_client = StockClient(stock)
            payments_client = PaymentsClient(payments)
            reserve_wait, reserve_timeout = create_time_budget(
                settings.create_budget_seconds, settings.call_timeout_seconds)
            admission = OrderAdmission(
                sold_out=SoldOutMemory(settings.sold_out_memory_seconds),
                reserving=InFlightLimit(settings.reserves_in_flight_per_product,
                                        wait_seconds=reserve_wait),
                metrics=metrics)
            keys = IdempotencyKeys(datastores.redis, namespace="orders")
            creation = OrderCreation(
                transactions=transactions, admission=admission, stock=stock_client,
                ids=OrderIds(transactions), keys=keys,
                payment_ttl=timedelta(seconds=settings.payment_ttl_seconds),
                reserve_timeout_seconds=reserve_timeout,
                budget_seconds=settings.create_budget_seconds,
                orphan_after=timedelta(seconds=settings.orphan_hold_after_seconds))
            effects = OrderEffects(
                transactions=transactions, reads=datastores.reads, admission=admission,
                stock=stock_client,
                payments=payments_client,
                orphan_after=timedelta(seconds=settings.orphan_hold_after_seconds))
            transitions = OrderTransitions(
                transactions=transactions, reads=datastores.reads, effects=effects,
                lease=timedelta(seconds=settings.payment_lease_seconds))
            expiry = OrderExpiry(
                transactions=transactions, effects=effects, payments=payments_client,
                transitions=transitions, check_timeout=settings.call_timeout_seconds,
                metrics=metrics)
            channels = Channels(settings.pubsub_prefix)
            line = OrderLine(
                LineScripts(datastores.redis, keep_ms=int(settings.line_keep_seconds * 1000),
                            lease_ms=int(settings.line_lease_seconds * 1000),
                            max_waiting=settings.line_max_waiting,
                            max_deciding=settings.line_max_deciding,
                            tickets_channel=channels.name(TICKETS_TOPIC),
                            open_channel=channels.name(OPEN_TOPIC),
                            finals_channel=(channels.name(FINALS_TOPIC)
                                            if settings.line_edge_finals_seconds > 0 else ""),
                            finals_ttl_ms=int(settings.line_edge_finals_seconds * 1000)),
                fingerprint=lambda body: fingerprint(body, keys.fingerprint_secret),
                retry_after_seconds=settings.line_retry_after_seconds, metrics=metrics.line,
                settle_seconds=settings.line_settle_seconds)
            metrics.line.length.bind(line_length_reader(line.scripts))
            stack.callback(metrics.line.length.bind, None)
            drain = LineDrain(scripts=line.scripts, admission=admission, creation=creation,
                              claim_batch=settings.reserves_in_flight_per_product,
                              one_drainer_below=settings.line_one_drainer_below_units)
            admission.with_line(line, drain)
            # One subscription for the process: answers for the tickets watched here, lines
            # opening on other replicas, stock_service's sell-outs (which refuse the line) and
            # its levels (near the end of the stock one process at a time admits the line).
            handlers = zip(HEARD_TOPICS, (heard_tickets(line, drain), drain.heard_open,
                                          drain.heard_edge_answer, drain.heard_level), strict=True)
            subscription = Subscription(
                settings.redis_url, {channels.name(topic): heard for topic, heard in handlers},
                on_connected=connected(line, drain))
            await subscription.start()
            stack.push_async_callback(subscription.close)
            stack.push_async_callback(line.close)
            stack.push_async_callback(drain.close)
            try:
                async with running(
                    expire_unpaid_orders(
                        expiry, interval_seconds=settings.expiry_interval_seconds),
                    settle_order_effects(
                        effects, interval_seconds=settings.settle_interval_seconds),
                    release_orphan_holds(
                        effects, interval_seconds=settings.orphan_interval_seconds),
                    sweep_lines(drain, interval_seconds=settings.line_sweep_interval_seconds),
                ):
                    yield Resources(settings=settings, datastores=datastores,
                                    admission=admission, creation=creation,
                                    transitions=transitions, effects=effects, drain=drain,
                                    tickets=TicketReads(line))
            finally:
                # Another replica drains the lines from now; the places decided here go on.
                await drain.stop_admitting()
                await creation.drain(timeout=settings.call_timeout_seconds)
                await expiry.drain()
                await effects.drain()

    return create_service_app(
        service="order_service",
        title="Order service",
        resources=open_resources,
        routers=[orders_router, internal_router],
        front=[OrderAdmissionFront],
        collectors=[*metrics.collectors(), *LOOPS.collectors()],
    )


# What the process's one subscription hears, in the order of its handlers. Its Redis user must
# be let hear each (shared/redis_acl.py): one channel refused, and the whole subscription is.
HEARD_TOPICS = (TICKETS_TOPIC, OPEN_TOPIC, ANSWERS_TOPIC, LEVELS_TOPIC)


def connected(line: OrderLine, drain: LineDrain) -> Callable[[], Awaitable[None]]:
    """After each (re)connection of the subscription: what it may have missed meanwhile."""
    async def again() -> None:
        drain.levels_missed()
        await line.recheck_watched()

    return again


def heard_tickets(line: OrderLine, drain: LineDrain) -> Callable[[str], None]:
    """The tickets channel's handler: the tickets watched here, and the drains (answers free
    room among the places being decided)."""
    def heard(message: str) -> None:
        line.watch.heard(message)
        drain.heard_answers(message)

    return heard
