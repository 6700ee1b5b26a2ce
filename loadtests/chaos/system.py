"""The chaos run's system: the six services and the gateway as uvicorn processes on loopback,
on the run's own MariaDB and Redis, every one of them killable and restartable by name.

Timers are shortened so that every hold is resolved within minutes (the bounds in
docs/chaos.md): the payment TTL, the payment lease, the expiry, settling and orphan loops of
order_service, payment_service's loops, stock_service's reconciler and expired-hold reaper.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from loadtests.chaos.datastores import PrivateMariaDB, PrivateRedis
from loadtests.signed import IDENTITY_ENVIRONMENT
from shared.migrate import upgrade
from shared.services import SERVICES, service
from shared.testing.net import ServiceProcess, free_port

GATEWAY = "gateway"
# The card-processor simulator (payment_service.simulator), when this checkout has it: never
# killed (its ledger, the checker's truth about charges, lives in its memory), its faults set
# through PUT /_sim/faults instead.
PROCESSOR_SIM = "processor_sim"
PROCESSOR_SIM_FACTORY = "payment_service.simulator.app:create_app"
WEBHOOK_PATH = "/webhooks/processor"
SCHEMA_SUFFIX = "chaos"
# A restart whose process exits (its database was down at that moment, say) is tried again, at
# most this often and for this long.
RESTART_ATTEMPTS = 6
RESTART_SECONDS = 90.0


@dataclass(frozen=True)
class Timers:
    """The settings the run shortens, as environment variables of the apps."""

    payment_ttl_seconds: int = 15
    payment_lease_seconds: float = 10.0
    # A payment pending this long is failed and its charge voided by payment_service's reaper
    # (PAYMENT_STALE_AFTER_SECONDS where payment_service has the setting; 60 s fixed before).
    stale_payment_seconds: float = 20.0
    orphan_hold_after_seconds: float = 10.0
    # Shorter than stock_service's 300 s, still long enough that a paid order whose commit
    # waits out a restart of stock_service and order_service keeps its units (at 30 s, a run
    # saw paid orders refunded because their holds were released first).
    expired_hold_grace_seconds: float = 90.0

    def environment(self) -> dict[str, str]:
        return {
            "ORDER_PAYMENT_TTL_SECONDS": str(self.payment_ttl_seconds),
            "ORDER_PAYMENT_LEASE_SECONDS": str(self.payment_lease_seconds),
            "ORDER_EXPIRY_INTERVAL_SECONDS": "0.5",
            "ORDER_SETTLE_INTERVAL_SECONDS": "1",
            "ORDER_ORPHAN_INTERVAL_SECONDS": "2",
            "ORDER_ORPHAN_HOLD_AFTER_SECONDS": str(self.orphan_hold_after_seconds),
            "PAYMENT_OUTBOX_INTERVAL_SECONDS": "0.5",
            "PAYMENT_STALE_INTERVAL_SECONDS": "2",
            "PAYMENT_STALE_AFTER_SECONDS": str(self.stale_payment_seconds),
            "STOCK_RECONCILE_INTERVAL_SECONDS": "1",
            "STOCK_EXPIRED_HOLD_GRACE_SECONDS": str(self.expired_hold_grace_seconds),
            "STOCK_EXPIRED_HOLD_INTERVAL_SECONDS": "2",
        }


@dataclass
class ChaosSystem:
    apps: dict[str, ServiceProcess]
    redis: PrivateRedis
    mariadb: PrivateMariaDB
    databases: dict[str, str]
    key_dir: Path
    restarts: list[tuple[str, float]] = field(default_factory=list)

    @property
    def gateway_url(self) -> str:
        return self.apps[GATEWAY].url

    @property
    def simulator_url(self) -> str | None:
        simulator = self.apps.get(PROCESSOR_SIM)
        return simulator.url if simulator is not None else None

    def set_processor_faults(self, faults: Mapping[str, object]) -> dict[str, object]:
        """PUT /_sim/faults; returns the settings now in force."""
        if self.simulator_url is None:
            raise RuntimeError("no processor simulator in this system")
        response = httpx.put(f"{self.simulator_url}/_sim/faults", json=dict(faults), timeout=10)
        response.raise_for_status()
        answer: dict[str, object] = response.json()
        return answer

    def kill(self, name: str) -> None:
        """kill -9 of one app, or of the run's own redis or mariadb; `redis-wiped` is Redis
        killed and started again empty."""
        if name == "redis":
            self.redis.kill()
        elif name == "redis-wiped":
            self.redis.kill()
            self.redis.forget_everything()
        elif name == "mariadb":
            self.mariadb.kill()
        else:
            self.apps[name].kill()

    def start(self, name: str) -> int:
        """Starts one app (or datastore) again on its port; returns the attempts it took."""
        if name in ("redis", "redis-wiped", "mariadb"):
            (self.mariadb if name == "mariadb" else self.redis).start()
            return 1
        deadline = time.monotonic() + RESTART_SECONDS
        app = self.apps[name]
        for attempt in range(1, RESTART_ATTEMPTS + 1):
            app.kill()
            app.start()
            try:
                app.wait_healthy(timeout=max(1.0, deadline - time.monotonic()))
                return attempt
            except RuntimeError:
                if attempt == RESTART_ATTEMPTS or time.monotonic() > deadline:
                    raise
                time.sleep(1.0)
        raise AssertionError("unreachable")

    def stop(self) -> None:
        for app in self.apps.values():
            app.stop()


def has_processor_simulator() -> bool:
    return importlib.util.find_spec("payment_service.simulator") is not None


def _schema_url(server: str, schema: str) -> str:
    return make_url(server).set(database=f"{schema}_{SCHEMA_SUFFIX}").render_as_string(
        hide_password=False)


@contextmanager
def chaos_system(workdir: Path, *, timers: Timers, seed: int,
                 extra_env: Mapping[str, str] | None = None) -> Iterator[ChaosSystem]:
    """Its own MariaDB (installed fresh) and Redis under `workdir`, the schemas migrated, the
    processor simulator (if any, seeded with `seed`), the services and the gateway started;
    everything stopped on the way out."""
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    redis = PrivateRedis("redis", workdir / "redis")
    mariadb = PrivateMariaDB("mariadb", workdir / "mariadb")
    apps: dict[str, ServiceProcess] = {}
    try:
        redis.start()
        mariadb.install()
        mariadb.start()
        databases = {app.name: _schema_url(mariadb.url, app.schema) for app in SERVICES}
        for name, url in databases.items():
            upgrade(service(name).package, url, drop_first=True)
        ports = {app.name: free_port() for app in SERVICES}
        key_dir = workdir / "keys"
        common = {"APP_ENV": "development", "LOG_LEVEL": "WARNING",
                  **IDENTITY_ENVIRONMENT,
                  **timers.environment(), **(extra_env or {})}
        if has_processor_simulator():
            apps[PROCESSOR_SIM] = ServiceProcess(
                PROCESSOR_SIM, PROCESSOR_SIM_FACTORY, log_dir=logs, env={
                    **common, "PROCESSOR_SIM_SEED": str(seed),
                    "PROCESSOR_SIM_WEBHOOK_URL": f"http://127.0.0.1:{ports['payment']}"
                                                 f"{WEBHOOK_PATH}",
                    "PROCESSOR_SIM_WEBHOOK_RETRY_SECONDS": "0.2"})
        for app in SERVICES:
            prefix = app.env_prefix
            env = {**common, f"{prefix}_DATABASE_URL": databases[app.name],
                   f"{prefix}_REDIS_URL": redis.url,
                   **{f"{prefix}_{other.upper()}_SERVICE_URL": f"http://127.0.0.1:{port}"
                      for other, port in ports.items()}}
            if app.name == "user":
                env["USER_JWT_KEY_DIR"] = str(key_dir)
            if app.name == "payment" and PROCESSOR_SIM in apps:
                env["PAYMENT_PROCESSOR_URL"] = apps[PROCESSOR_SIM].url
            apps[app.name] = ServiceProcess(app.name, app.factory, env=env, log_dir=logs,
                                            port=ports[app.name])
        apps[GATEWAY] = ServiceProcess(GATEWAY, "gateway.app:create_app", log_dir=logs, env={
            **common, "GATEWAY_REDIS_URL": redis.url,
            **{f"GATEWAY_{name.upper()}_SERVICE_URL": f"http://127.0.0.1:{port}"
               for name, port in ports.items()}})
        for name, process in apps.items():
            if name != GATEWAY:
                process.start()
        for name, process in apps.items():
            if name != GATEWAY:
                process.wait_healthy(timeout=60)
        # After the services: it fetches user_service's JWKS when it starts.
        apps[GATEWAY].start().wait_healthy(timeout=60)
        yield ChaosSystem(apps, redis, mariadb, databases, key_dir)
    finally:
        for process in apps.values():
            process.stop()
        mariadb.stop()
        redis.stop()
