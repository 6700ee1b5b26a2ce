"""The processes a benchmark or a load run measures, as real uvicorn processes on loopback with
schemas and a Redis database of their own: user_service and the gateway with an SMTP sink for
sign-up codes (bench_system), or any set of services behind a gateway (service_system)."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from loadtests.signed import IDENTITY_ENVIRONMENT
from shared.contracts import SELLER_ROLE
from shared.db import create_engine, create_sessionmaker
from shared.migrate import upgrade
from shared.services import PROCESSOR_SIM, service
from shared.testing.datastores import database_url_for_tests
from shared.testing.identity import DEPLOYMENT_KEY
from shared.testing.mail import MailSink
from shared.testing.net import ServiceProcess, free_port
from shared.testing.processor import payment_environment, simulator_process
from user_service.roles.service import grant_role as grant_role_to

# Its own Redis database and schema, so a benchmark never touches a test run's or `make run`'s
# data; TEST_NAMESPACE (see shared/testing/datastores.py) keeps two checkouts' benchmarks apart.
BENCH_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class BenchSystem:
    gateway_url: str
    user_url: str
    mail: MailSink
    # What the gateway signs forwarded identities with: a direct caller signs its own with it.
    identity_key: str
    # The gateway's and user_service's processes (their CPU per request, in bench_gateway).
    pids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Account:
    email: str
    user_id: int
    access_token: str


def bench_database_url(schema: str = "preorder_user", suffix: str = "bench") -> str:
    return database_url_for_tests(schema, suffix)


@contextmanager
def hello_world_process() -> Iterator[ServiceProcess]:
    """The hello-world yardstick (loadtests/hello.py) on one uvicorn worker, started (its
    route is /hello; its process's CPU per request is a yardstick too)."""
    hello = ServiceProcess("hello", "loadtests.hello:create_app",
                           log_dir=Path(tempfile.mkdtemp(prefix="bench-")), env={})
    try:
        hello.start().wait_healthy_at("/hello")
        yield hello
    finally:
        hello.stop()


@contextmanager
def hello_world() -> Iterator[str]:
    """The hello-world yardstick; yields its URL."""
    with hello_world_process() as hello:
        yield f"{hello.url}/hello"


@contextmanager
def bench_system(*, suffix: str = "bench",
                 env: Mapping[str, str] | None = None) -> Iterator[BenchSystem]:
    """user_service and the gateway on the schema `preorder_user_<suffix>`; `env` is added to
    both processes' environment (tracing settings, say)."""
    database_url = bench_database_url(suffix=suffix)
    # Settings default to production; the migration here reads them too.
    os.environ["APP_ENV"] = "development"
    upgrade("user_service", database_url, drop_first=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    mail = MailSink().start()
    # What every process of the benchmark shares (settings default to production).
    identity_key = DEPLOYMENT_KEY
    common = {"APP_ENV": "development", "LOG_LEVEL": "WARNING", **IDENTITY_ENVIRONMENT,
              **(env or {})}
    user = ServiceProcess("user_service", "user_service.app:create_app", log_dir=workdir, env={
        **common, "USER_DATABASE_URL": database_url, "USER_REDIS_URL": BENCH_REDIS_URL,
        "USER_JWT_KEY_DIR": str(workdir / "keys"), "SMTP_HOST": mail.host,
        "SMTP_PORT": str(mail.port),
    })
    gateway: ServiceProcess | None = None
    try:
        user.start().wait_healthy()
        gateway = ServiceProcess("gateway", "gateway.app:create_app", log_dir=workdir, env={
            **common, "GATEWAY_USER_SERVICE_URL": user.url, "GATEWAY_REDIS_URL": BENCH_REDIS_URL,
        })
        gateway.start().wait_healthy()
        yield BenchSystem(gateway.url, user.url, mail, identity_key,
                          tuple(p.process.pid for p in (gateway, user) if p.process))
    finally:
        if gateway is not None:
            gateway.stop()
        user.stop()
        mail.stop()


async def grant_role(database_url: str, email: str, role: str) -> None:
    """As the operator's command does (python -m user_service.roles), on user_service's schema."""
    engine = create_engine(database_url, pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session:
            await grant_role_to(session, email, role)
            await session.commit()
    finally:
        await engine.dispose()


async def create_account(system: BenchSystem, *, seller_in: str | None = None) -> Account:
    """Sign up, verify with the mailed code and log in, all through the gateway; granted the
    seller role before the login when `seller_in` names user_service's database."""
    email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
    async with httpx.AsyncClient(base_url=system.gateway_url, timeout=10) as client:
        signup = await client.post("/api/v1/auth/signup",
                                   json={"email": email, "password": PASSWORD, "name": "Bench"})
        signup.raise_for_status()
        code = (await system.mail.wait_for(email)).code
        verified = await client.post("/api/v1/auth/verify-email", json={"email": email, "code": code})
        verified.raise_for_status()
        if seller_in is not None:
            await grant_role(seller_in, email, SELLER_ROLE)
        login = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        login.raise_for_status()
    return Account(email, int(signup.json()["id"]), login.json()["access_token"])


# Replicas of one app listen on one port, one loopback address each; their name (NAME_OF) is
# told to every process through SERVICE_HOSTS, as an orchestrator's DNS would answer it.
REPLICA_ADDRESSES = tuple(f"127.0.0.{n}" for n in range(1, 9))


def replica_host(name: str) -> str:
    return f"{name}.replicas.test"


@dataclass
class ServiceSystem:
    """Services behind a gateway, each a uvicorn process on loopback with its own schema."""

    processes: dict[str, ServiceProcess]
    gateway: ServiceProcess
    databases: dict[str, str]
    key_dir: Path
    # What every process signs and checks forwarded identities with; a direct call signs too.
    identity_key: str
    # More gateway processes on the same services, as replicas behind a load balancer would be.
    more_gateways: list[ServiceProcess] = field(default_factory=list)
    # Every replica of each app (the gateway's too), first the one in `processes`/`gateway`.
    replicas: dict[str, list[ServiceProcess]] = field(default_factory=dict)
    # SERVICE_HOSTS: the names replicated apps are called by, and their addresses.
    hosts: dict[str, list[str]] = field(default_factory=dict)

    @property
    def gateways(self) -> list[ServiceProcess]:
        return [self.gateway, *self.more_gateways]

    @property
    def gateway_url(self) -> str:
        """Where a client reaches the gateway: its name when there are several (a client
        resolving through shared.replicas.Resolver(hosts) spreads over them)."""
        if len(self.replicas.get("gateway", [])) > 1:
            return f"http://{replica_host('gateway')}:{self.gateway.port}"
        return self.gateway.url

    def pids(self) -> dict[str, int]:
        every = {**{name: [p] for name, p in self.processes.items()}, **self.replicas}
        every["gateway"] = self.gateways
        return {name if n == 0 else f"{name}#{n + 1}": process.process.pid
                for name, processes in every.items()
                for n, process in enumerate(processes) if process.process}


@contextmanager
def service_system(apps: Sequence[str], workdir: Path, *, redis_url: str, schema_suffix: str,
                   env: Mapping[str, str] | None = None,
                   gateways: int = 1,
                   replicas: Mapping[str, int] | None = None) -> Iterator[ServiceSystem]:
    """`apps` (short names from shared/services.py) on fresh schemas `preorder_<app>_<suffix>`
    (TEST_NAMESPACE appended) and `redis_url`, every one told where the others are, then the
    gateway. The caller clears `redis_url`'s keys first: state keyed by row ids must go with the
    rows. `env` is added to every process's environment (ORDER_PAYMENT_TTL_SECONDS, say).
    `gateways` processes front the services, each on its own port (the first is `gateway`).
    `replicas`: how many processes of an app (or of the gateway) run, on one port at 127.0.0.1,
    127.0.0.2, ..., called by one name (replica_host) that SERVICE_HOSTS resolves to them all."""
    if gateways > 1 and (replicas or {}).get("gateway", 1) > 1:
        raise ValueError("gateways on ports of their own, or behind one name: not both")
    # Settings default to production; the migrations and the callers' own settings read them too.
    os.environ["APP_ENV"] = "development"
    counts = {name: (replicas or {}).get(name, 1) for name in (*apps, "gateway")}
    ports = {name: free_port() for name in apps}
    hosts = {replica_host(name): list(REPLICA_ADDRESSES[:count])
             for name, count in counts.items() if count > 1}
    urls = {name: f"http://{replica_host(name) if counts[name] > 1 else '127.0.0.1'}:{port}"
            for name, port in ports.items()}
    # The other services call an app with an internal port there (the gateway the public one).
    internal_ports = {name: free_port() for name in apps if service(name).internal_port}
    internal_urls = {**urls, **{
        name: f"http://{replica_host(name) if counts[name] > 1 else '127.0.0.1'}:{port}"
        for name, port in internal_ports.items()}}
    databases = {name: database_url_for_tests(service(name).schema, schema_suffix)
                 for name in apps}
    for name, url in databases.items():
        upgrade(service(name).package, url, drop_first=True)
    key_dir = workdir / "keys"
    identity_key = DEPLOYMENT_KEY
    common = {"APP_ENV": "development", "LOG_LEVEL": "WARNING", **IDENTITY_ENVIRONMENT,
              "SERVICE_HOSTS": json.dumps(hosts),
              **(env or {})}
    processes: dict[str, ServiceProcess] = {}
    if "payment" in apps:
        # The card processor simulator, at its defaults (PAYMENT_FAILURE_RATE from `env`).
        processes[PROCESSOR_SIM.name] = simulator_process(
            payment_url=urls["payment"], log_dir=workdir, env={**common, "LOG_LEVEL": "WARNING"})
    every: dict[str, list[ServiceProcess]] = {}
    for name in apps:
        prefix = name.upper()
        app_env = {**common, f"{prefix}_DATABASE_URL": databases[name],
                   f"{prefix}_REDIS_URL": redis_url,
                   **{f"{prefix}_{other.upper()}_SERVICE_URL": url
                      for other, url in internal_urls.items()}}
        if name == "user":
            app_env["USER_JWT_KEY_DIR"] = str(key_dir)
        if name == "payment":
            app_env.update(payment_environment(processes[PROCESSOR_SIM.name]))
        # Each replica listens for the other services' calls at its own address, on one port.
        internal = ({n: {f"{prefix}_INTERNAL_HOST": REPLICA_ADDRESSES[n],
                         f"{prefix}_INTERNAL_PORT": str(internal_ports[name])}
                     for n in range(counts[name])} if name in internal_ports else {})
        every[name] = [ServiceProcess(name if n == 0 else f"{name}-{n + 1}", service(name).factory,
                                      env={**app_env, **internal.get(n, {})}, log_dir=workdir,
                                      port=ports[name], host=REPLICA_ADDRESSES[n])
                       for n in range(counts[name])]
        processes[name] = every[name][0]
    gateway_env = {**common, "GATEWAY_REDIS_URL": redis_url,
                   **{f"GATEWAY_{name.upper()}_SERVICE_URL": url for name, url in urls.items()}}
    if counts["gateway"] > 1:  # behind one name: one port, an address each
        gateway_port = free_port()
        every["gateway"] = [
            ServiceProcess("gateway" if n == 0 else f"gateway-{n + 1}", "gateway.app:create_app",
                           log_dir=workdir, port=gateway_port, host=REPLICA_ADDRESSES[n],
                           env=with_metrics_port(gateway_env))
            for n in range(counts["gateway"])]
    else:
        every["gateway"] = [
            ServiceProcess("gateway" if n == 0 else f"gateway-{n + 1}", "gateway.app:create_app",
                           log_dir=workdir, env=with_metrics_port(gateway_env))
            for n in range(max(1, gateways))]
    services = [*processes.values(), *(p for name in apps for p in every[name][1:])]
    try:
        for process in services:
            process.start()
        for process in services:
            process.wait_healthy()
        # After the services: it fetches user_service's JWKS when it starts.
        for gateway in every["gateway"]:
            gateway.start()
        for gateway in every["gateway"]:
            gateway.wait_healthy()
        yield ServiceSystem(processes, every["gateway"][0], databases, key_dir, identity_key,
                            every["gateway"][1:], every, hosts)
    finally:
        for gateway in every["gateway"]:
            gateway.stop()
        for process in services:
            process.stop()


def parse_replicas(text: str, apps: Sequence[str]) -> dict[str, int]:
    """`gateway=2,order=2` -> {"gateway": 2, "order": 2}, of the gateway and `apps` only."""
    try:
        counts = {name.strip(): int(count) for name, _, count in
                  (part.partition("=") for part in text.split(",") if part.strip())}
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"name=count, comma-separated: {error}") from None
    unknown = set(counts) - {"gateway", *apps}
    if unknown or any(count < 1 for count in counts.values()):
        raise argparse.ArgumentTypeError(f"replicas of gateway or {', '.join(apps)}, >= 1")
    return counts


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def datastore_pids() -> dict[str, int]:
    """The local MariaDB and Redis servers' processes, when they run on this machine (their CPU
    is shared with anything else using them at the time)."""
    found: dict[str, int] = {}
    names = {"mariadbd": "mariadb", "mysqld": "mariadb", "redis-server": "redis"}
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            name = names.get(comm.read_text().strip())
        except OSError:
            continue
        if name is not None and name not in found:
            found[name] = int(comm.parent.name)
    return found


def with_metrics_port(env: dict[str, str]) -> dict[str, str]:
    """A gateway's environment with an internal metrics listener of its own (GET /metrics is
    never on the public port): the benchmarks read its request counts there."""
    return {**env, "GATEWAY_METRICS_PORT": str(free_port())}


def metrics_url(process: ServiceProcess) -> str:
    """Where `process` serves GET /metrics: a gateway on its internal listener, an app on its
    own port."""
    port = process.env.get("GATEWAY_METRICS_PORT")
    if port and process.app.startswith("gateway."):
        return f"http://127.0.0.1:{port}"
    return process.url
