"""The whole system for end-to-end tests: every service and the gateway, each its own uvicorn
process on loopback, with real MariaDB, Redis and an SMTP server; and the client-side steps
(sign-up, login, problem checks) the end-to-end modules share."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from shared.services import SERVICES
from shared.testing.datastores import TEST_PUBSUB_PREFIX, forget_redis_keys, fresh_database
from shared.testing.mail import MailSink
from shared.testing.net import ServiceProcess, free_port
from shared.testing.processor import payment_environment, simulator_process
from shared.testing.redis_acl import app_users

PASSWORD = "correct horse battery"


@dataclass
class System:
    gateway: ServiceProcess
    services: dict[str, ServiceProcess]
    mail: MailSink

    def log(self, name: str) -> str:
        process = self.gateway if name == "gateway" else self.services[name]
        return process.log_path.read_text()

    async def wait_for_logged(self, text: str, *names: str) -> None:
        """Until each named log has `text` (lines are written a moment after the answer)."""
        for _ in range(50):
            if all(text in self.log(name) for name in names):
                return
            await asyncio.sleep(0.05)
        for name in names:
            assert text in self.log(name), f"{text!r} not in the {name} log"


@contextmanager
def running_system(mail_sink: MailSink, redis_url: str, logs: Path,
                   overrides: dict[str, dict[str, str]] | None = None) -> Iterator[System]:
    """Fresh e2e schemas, every service, then the gateway in front of them. `overrides` adds
    environment variables per app (a service's short name, "processor_sim" or "gateway"). Each app reaches
    Redis as its own ACL user, as deployed (shared/redis_acl.py), on a Redis Cluster too (made on
    each of its nodes)."""
    overrides = overrides or {}
    with app_users(redis_url, TEST_PUBSUB_PREFIX) as redis_urls:
        yield from _running(mail_sink, redis_url, redis_urls, logs, overrides)


def _running(mail_sink: MailSink, redis_url: str, redis_urls: dict[str, str], logs: Path,
             overrides: dict[str, dict[str, str]]) -> Iterator[System]:
    common = {"APP_ENV": "test", "LOG_LEVEL": "INFO"}
    # State keyed by row ids the fresh schemas hand out again (timelines, live stock, keys).
    for prefix in ("social:", "{p:", "stock:", "idem:", "product:"):
        forget_redis_keys(redis_url, prefix)
    ports = {app.name: free_port() for app in SERVICES}
    # Every service learns where every other one is (<PREFIX>_<NAME>_SERVICE_URL, read by
    # those whose settings have it, ignored by the rest).
    addresses = {f"{app.name.upper()}_SERVICE_URL": f"http://127.0.0.1:{port}"
                 for app, port in zip(SERVICES, ports.values(), strict=True)}
    services: dict[str, ServiceProcess] = {}
    simulator = simulator_process(payment_url=f"http://127.0.0.1:{ports['payment']}",
                                  log_dir=logs, env=overrides.get("processor_sim"))
    for app in SERVICES:
        prefix = app.env_prefix
        env = {**common,
               **{f"{prefix}_{name}": url for name, url in addresses.items()},
               f"{prefix}_DATABASE_URL": fresh_database(app.package, app.schema, "e2e"),
               f"{prefix}_REDIS_URL": redis_urls.get(app.name, redis_url)}
        if app.name == "user":
            env.update({"SMTP_HOST": mail_sink.host, "SMTP_PORT": str(mail_sink.port),
                        "USER_JWT_KEY_DIR": str(logs / "keys")})
        if app.name == "payment":
            env.update(payment_environment(simulator))
        env.update(overrides.get(app.name, {}))
        services[app.name] = ServiceProcess(app.name, app.factory, env=env, log_dir=logs,
                                            port=ports[app.name])
    for process in services.values():
        process.start()
    simulator.start()
    # A module's tests share their buyers: the per-user limit is gateway/tests/test_rate_limits.py's.
    gateway_env = {**common, "GATEWAY_REDIS_URL": redis_urls.get("gateway", redis_url),
                   "GATEWAY_UPSTREAM_TIMEOUT_SECONDS": "5",
                   "GATEWAY_RATE_LIMIT_PER_USER": "1000",
                   **{f"GATEWAY_{n.upper()}_SERVICE_URL": p.url for n, p in services.items()}}
    gateway_env.update(overrides.get("gateway", {}))
    gateway = ServiceProcess("gateway", "gateway.app:create_app", env=gateway_env, log_dir=logs)
    try:
        for process in services.values():
            process.wait_healthy()
        gateway.start().wait_healthy()
        yield System(gateway, services, mail_sink)
    finally:
        gateway.stop()
        simulator.stop()
        for process in services.values():
            process.stop()


_loopback_hosts = itertools.count()


def new_client_address() -> str:
    """A loopback address no other test has used: the throttles count per client address."""
    n = next(_loopback_hosts)
    return f"127.0.{1 + n // 250}.{2 + n % 250}"


def client_at(system: System, address: str) -> httpx.AsyncClient:
    """A client whose requests reach the gateway from `address` (bound on loopback)."""
    return httpx.AsyncClient(base_url=system.gateway.url, timeout=15,
                             transport=httpx.AsyncHTTPTransport(local_address=address))


def new_email() -> str:
    return f"e2e-{uuid.uuid4().hex[:12]}@example.com"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def signed_up(api: httpx.AsyncClient, mail: MailSink, *, name: str = "Kim") -> str:
    email = new_email()
    response = await api.post("/api/v1/auth/signup",
                              json={"email": email, "password": PASSWORD, "name": name})
    assert response.status_code == 201, response.text
    code = (await mail.wait_for(email)).code
    verified = await api.post("/api/v1/auth/verify-email", json={"email": email, "code": code})
    assert verified.status_code == 200, verified.text
    return email


async def login(api: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    response = await api.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


@dataclass(frozen=True)
class User:
    """A signed-up, verified and logged-in account: its id and its bearer header."""

    id: int
    headers: dict[str, str]


async def new_user(api: httpx.AsyncClient, system: System) -> User:
    tokens = await login(api, await signed_up(api, system.mail))
    headers = bearer(tokens["access_token"])
    me = await api.get("/api/v1/users/me", headers=headers)
    return User(me.json()["id"], headers)


def grant_role(system: System, email: str, role: str) -> None:
    """As an operator does: user_service's command, with the service's own environment."""
    done = subprocess.run([sys.executable, "-m", "user_service.roles", "grant", email, role],
                          env=system.services["user"].env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr


async def new_seller(api: httpx.AsyncClient, system: System) -> User:
    """A user an operator granted the `seller` role before they logged in."""
    email = await signed_up(api, system.mail)
    await asyncio.to_thread(grant_role, system, email, "seller")
    headers = bearer((await login(api, email))["access_token"])
    me = await api.get("/api/v1/users/me", headers=headers)
    assert me.json()["roles"] == ["seller"]
    return User(me.json()["id"], headers)
