"""The sale's three services as real processes on loopback (stock, order, payment) over fresh
schemas, talking real HTTP; tests act as the gateway (identity headers) and can restart a
service with other settings (a fault switch, say). The fixtures `sale`, `http` and `engines`
come with the test plugin (shared/testing/plugin.py); the client steps and the invariant check
are in sale_flow.py."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.internal.stock import StockRegistration, product_path
from shared.services import service
from shared.testing.datastores import forget_redis_keys, fresh_database
from shared.testing.identity import service_identity_headers, sign_at_send
from shared.testing.net import ServiceProcess, free_port
from shared.testing.processor import payment_environment, simulator_process

SALE_APPS = ("stock", "order", "payment")
SIMULATOR = "processor_sim"
# Short enough that expiry can be watched, long enough to pay on a busy machine.
PAYMENT_TTL_SECONDS = 4
_product_ids = itertools.count(int.from_bytes(os.urandom(3), "big") * 1000 + 1)


@dataclass
class Sale:
    processes: dict[str, ServiceProcess]
    databases: dict[str, str]
    environments: dict[str, dict[str, str]]
    logs: Path
    restarts: list[str] = field(default_factory=list)

    def url(self, name: str) -> str:
        return self.processes[name].url

    def audience_of(self, url: httpx.URL) -> str:
        """The package of the service listening where `url` points (what a request to it is
        signed for)."""
        for name, process in self.processes.items():
            if httpx.URL(process.url).port == url.port:
                return service(name).package
        raise KeyError(f"no service of the sale at {url}")

    def restart(self, name: str, *, factory: str | None = None, **extra_env: str) -> None:
        """Stops the service (if it still runs) and starts it again, same port and schema (the
        processor simulator too: SIMULATOR); `factory`: another app factory (one with a fault
        built in, say)."""
        old = self.processes[name]
        old.stop()
        app = service(name)
        env = {**self.environments[name], **extra_env}
        self.processes[name] = ServiceProcess(name, factory or app.factory, env=env,
                                              log_dir=self.logs, port=old.port).start()
        self.processes[name].wait_healthy()
        self.restarts.append(name)


def sale_environment(name: str, *, database_url: str, redis_url: str,
                     ports: dict[str, int]) -> dict[str, str]:
    prefix = name.upper()
    env = {"APP_ENV": "test", "LOG_LEVEL": "INFO", f"{prefix}_DATABASE_URL": database_url,
           f"{prefix}_REDIS_URL": redis_url,
           **{f"{prefix}_{other.upper()}_SERVICE_URL": f"http://127.0.0.1:{port}"
              for other, port in ports.items()}}
    if name == "order":
        env.update(ORDER_PAYMENT_TTL_SECONDS=str(PAYMENT_TTL_SECONDS),
                   ORDER_EXPIRY_INTERVAL_SECONDS="0.2", ORDER_SETTLE_INTERVAL_SECONDS="0.5",
                   ORDER_ORPHAN_INTERVAL_SECONDS="0.5", ORDER_ORPHAN_HOLD_AFTER_SECONDS="3",
                   ORDER_PAYMENT_LEASE_SECONDS="10")
    if name == "payment":
        env.update(PAYMENT_OUTBOX_INTERVAL_SECONDS="0.2")
    if name == "stock":
        env.update(STOCK_RECONCILE_INTERVAL_SECONDS="1")
    return env


@pytest.fixture(scope="session")
def sale(redis_url: str, redis: Redis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sale]:
    # `redis` is asked for so the test database is flushed before these services start.
    logs = tmp_path_factory.mktemp("sale-logs")
    for prefix in ("{p:", "stock:", "idem:", "line:"):
        forget_redis_keys(redis_url, prefix)
    ports = {name: free_port() for name in SALE_APPS}
    simulator = simulator_process(payment_url=f"http://127.0.0.1:{ports['payment']}",
                                  log_dir=logs)
    databases = {name: fresh_database(service(name).package, service(name).schema, "sale")
                 for name in SALE_APPS}
    environments = {name: sale_environment(name, database_url=databases[name],
                                           redis_url=redis_url, ports=ports)
                    for name in SALE_APPS}
    environments["payment"].update(payment_environment(simulator))
    environments[SIMULATOR] = simulator.env
    processes = {name: ServiceProcess(name, service(name).factory, env=environments[name],
                                      log_dir=logs, port=ports[name]).start()
                 for name in SALE_APPS}
    processes[SIMULATOR] = simulator.start()
    try:
        for process in processes.values():
            process.wait_healthy()
        yield Sale(processes, databases, environments, logs)
    finally:
        for process in processes.values():
            process.stop()


@pytest.fixture
async def http(sale: Sale) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=20, limits=httpx.Limits(max_connections=400),
                                 event_hooks={"request": [sign_at_send(sale.audience_of)]}
                                 ) as client:
        yield client


@pytest.fixture(scope="session")
async def engines(sale: Sale) -> AsyncIterator[dict[str, AsyncEngine]]:
    engines = {name: create_async_engine(url) for name, url in sale.databases.items()}
    yield engines
    for engine in engines.values():
        await engine.dispose()


async def register_product(http: httpx.AsyncClient, sale: Sale, *, total: int,
                           price: int = 10_000, limit_per_user: int | None = None,
                           **window: Any) -> int:
    """A product open for orders (unless a window is given), registered at stock_service as
    product_service would."""
    product_id = next(_product_ids)
    body = StockRegistration(seller_id=1, price=price, total=total,
                             limit_per_user=limit_per_user).model_dump(mode="json")
    body["sale_opens_at"] = "2020-01-01T00:00:00Z"
    body.update(window)
    response = await http.put(sale.url("stock") + product_path(product_id), json=body,
                              headers=service_identity_headers("product_service"))
    assert response.status_code == 200, response.text
    return product_id
