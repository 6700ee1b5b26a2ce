"""stock_service application: the lifespan builds its Resources, rebuilds Redis from the ledger
when it has lost its state, and runs the reconciler and the expired-hold reaper."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from shared.app import create_service_app
from shared.db import Transactions
from shared.lifespan import open_datastores
from shared.logging import configure_logging
from shared.loops import running
from shared.sale_metrics import LOOPS, StockMetrics, bind_redis_probe
from stock_service.dependencies import Resources
from stock_service.settings import Settings, get_settings
from stock_service.stock.admission import RememberedLevel, ReserveRefusal, StockAdmission
from stock_service.stock.catalog import CatalogService
from stock_service.stock.holds import HoldService
from stock_service.stock.live import LiveStock, refresh_sold_out_answers_periodically
from stock_service.stock.live import router as live_router
from stock_service.stock.metrics import stock_levels_reader
from stock_service.stock.rebuild import LiveState
from stock_service.stock.repository import LedgerRepository
from stock_service.stock.router import internal_router
from stock_service.stock.router import router as stock_router
from stock_service.stock.scripts import StockScripts
from stock_service.stock.tasks import (
    reconcile_live_stock_periodically,
    release_expired_holds_periodically,
)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("stock_service", settings.log_level)
    # Made with the app, not in the lifespan: /metrics is wired up before the app starts.
    metrics = StockMetrics()

    @asynccontextmanager
    async def open_resources() -> AsyncIterator[Resources]:
        async with open_datastores(settings) as datastores:
            transactions = Transactions(datastores.sessionmaker, LedgerRepository)
            scripts = StockScripts(datastores.redis)
            admission = StockAdmission(scripts=scripts,
                                       sold_out_memory=settings.sold_out_memory_seconds,
                                       view_memory=settings.view_memory_seconds)
            live = LiveState(transactions=transactions, redis=datastores.redis, scripts=scripts,
                             on_change=admission.changed)
            holds = HoldService(transactions=transactions, reads=datastores.reads,
                                scripts=scripts, live=live, admission=admission,
                                hold_ttl=timedelta(seconds=settings.hold_ttl_seconds),
                                metrics=metrics)
            catalog = CatalogService(transactions=transactions, reads=datastores.reads,
                                     scripts=scripts, live=live, admission=admission)
            live_stock = LiveStock(redis=datastores.redis, redis_url=settings.redis_url,
                                   catalog=catalog, prefix=settings.pubsub_prefix,
                                   min_interval=settings.live_min_interval_seconds,
                                   heartbeat_seconds=settings.live_heartbeat_seconds,
                                   edge_ttl_seconds=settings.edge_answer_ttl_seconds,
                                   edge_refresh_window_seconds=(
                                       settings.edge_answer_refresh_window_seconds))
            admission.on_level_change = live_stock.changed
            await live_stock.start()
            metrics.levels.bind(stock_levels_reader(scripts, metrics.products))
            bind_redis_probe(metrics.redis_up, datastores.redis.ping)
            try:
                async with running(
                    refresh_sold_out_answers_periodically(
                        live_stock, interval_seconds=settings.edge_answer_ttl_seconds / 3),
                    reconcile_live_stock_periodically(
                        live, interval_seconds=settings.reconcile_interval_seconds,
                        metrics=metrics),
                    release_expired_holds_periodically(
                        holds, interval_seconds=settings.expired_hold_interval_seconds,
                        grace=timedelta(seconds=settings.expired_hold_grace_seconds)),
                ):
                    yield Resources(settings=settings, datastores=datastores, scripts=scripts,
                                    live=live, admission=admission, holds=holds,
                                    catalog=catalog, live_stock=live_stock)
            finally:
                metrics.levels.bind(None)
                bind_redis_probe(metrics.redis_up, None)
                await live_stock.close()
                await live.drain()

    return create_service_app(
        service="stock_service",
        title="Stock service",
        resources=open_resources,
        routers=[stock_router, live_router, internal_router],
        front=[ReserveRefusal, RememberedLevel],
        collectors=[*metrics.collectors(), *LOOPS.collectors()],
    )
