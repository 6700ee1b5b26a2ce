"""`make run`: the whole system on loopback, in one terminal.

1. MySQL and Redis: use them if they answer, else start them with Docker (deploy/compose.deps.yml),
   else from the OS packages (MariaDB, Redis).
2. Each database service's Alembic chain (`python -m deploy.migrate`).
3. Mail: an embedded SMTP sink writing .data/mail/*.eml, unless SMTP_HOST is set.
4. The eight uvicorn processes (the card processor simulator among them), their output merged
   into one stream with a prefix per service.
5. Ctrl-C or SIGTERM stops everything it started; a service that dies on its own stops the rest.
   The services never outlive it, even when it is killed with SIGKILL (the parent-death signal).

The apps write JSON lines, as in containers; this renders them for a terminal (time, service,
level, request id, message), unless `--json-logs` asks for them as they are.

`python -m deploy.run_local user product` starts only those services (the gateway is `gateway`).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import importlib
import ipaddress
import json
import os
import shutil
import signal
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from deploy.dev_keys import PUBLIC_KEYS_VARIABLE, load_or_create_identity_keys
from deploy.mail_sink import MailSink, StoredMail
from shared.services import GATEWAY, PROCESSOR_SIM, SERVICES, App

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / ".data"
MAIL_DIR = DATA_DIR / "mail"
COMPOSE_DEPS = REPO_ROOT / "deploy" / "compose.deps.yml"
# Given on the command line: a top-level `name:` in the file is refused by docker-compose 1.x.
DEPS_PROJECT = "preorder-deps"
MARIADBD = Path("/usr/sbin/mariadbd")

PREFIX_WIDTH = 8
STOP_GRACE_SECONDS = 10.0
HEALTHY_TIMEOUT_SECONDS = 60.0
DATASTORE_TIMEOUT_SECONDS = 120.0
LISTEN_BACKLOG = 4096
RECENT_LINES = 40


def all_services() -> tuple[App, ...]:
    """The registry's apps, with the gateway on GATEWAY_PORT when that is set, and the card
    processor simulator payment_service charges through."""
    gateway = replace(GATEWAY, port=int(os.environ.get("GATEWAY_PORT", GATEWAY.port)))
    return (gateway, *SERVICES, PROCESSOR_SIM)


class LogStream:
    """One output stream; every line carries a fixed-width prefix, colored on a terminal.

    An app's JSON line (shared.logging) is rendered as `HH:MM:SS level [request] message
    key=value...`, its traceback below it; with `raw_json` it is passed on as it came."""

    COLORS = {"gateway": 36, "user": 32, "product": 33, "order": 35, "payment": 34,
              "stock": 96, "social": 92, "processor_sim": 94, "mail": 93, "migrate": 37, "run": 1}
    LEVEL_COLORS = {"debug": 2, "warning": 33, "error": 31, "critical": 31}
    # The line's own fields; anything else a line carries is shown as key=value.
    FIELDS = ("ts", "level", "service", "logger", "msg", "request_id", "extra", "exc")

    def __init__(self, out: TextIO, *, raw_json: bool = False) -> None:
        self.out = out
        self.color = out.isatty() and "NO_COLOR" not in os.environ
        self.raw_json = raw_json

    def _paint(self, code: int, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color and code else text

    def line(self, name: str, message: str) -> None:
        prefix = self._paint(self.COLORS.get(name, 0), f"{name:<{PREFIX_WIDTH}}|")
        self.out.write(f"{prefix} {message}\n")
        self.out.flush()

    def app_line(self, name: str, raw: str) -> None:
        """A line an app wrote: rendered if it is one of shared.logging's JSON lines."""
        entry = None if self.raw_json or not raw.startswith("{") else _json_object(raw)
        if entry is None:
            self.line(name, raw)
            return
        level = str(entry.get("level", "info"))
        parts = [str(entry.get("ts", ""))[11:19],
                 self._paint(self.LEVEL_COLORS.get(level, 0), f"{level:<7}")]
        if request_id := entry.get("request_id"):
            parts.append(self._paint(2, f"[{str(request_id)[:8]}]"))
        parts.append(str(entry.get("msg", "")))
        extra = entry.get("extra")
        extra = extra if isinstance(extra, dict) else {}
        others = {k: v for k, v in entry.items() if k not in self.FIELDS}
        parts += [f"{key}={value}" for key, value in {**extra, **others}.items()
                  if key not in ("route", "status")]  # an access line's message says both
        self.line(name, " ".join(parts))
        if exc := entry.get("exc"):
            for exc_line in str(exc).splitlines():
                self.line(name, f"  {exc_line}")

    def run(self, message: str) -> None:
        self.line("run", message)


def _json_object(raw: str) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class SetupError(Exception):
    """A step before the services start failed; the message says what to do."""


# --- 1. MySQL and Redis ---------------------------------------------------------------------


@dataclass(frozen=True)
class Datastores:
    mysql_servers: tuple[str, ...]
    redis_urls: tuple[str, ...]


def configured_datastores(services: Sequence[App]) -> Datastores:
    """The MySQL servers and Redis URLs the chosen services' settings point at."""
    mysql: dict[str, None] = {}
    redis: dict[str, None] = {}
    for service in services:
        settings = importlib.import_module(f"{service.package}.settings").get_settings()
        if (database_url := getattr(settings, "database_url", None)) is not None:
            mysql[mysql_server(database_url)] = None
        if (redis_url := getattr(settings, "redis_url", None)) is not None:
            redis[str(redis_url)] = None
    return Datastores(tuple(mysql), tuple(redis))


def mysql_server(database_url: str) -> str:
    """The server of a database URL without its schema: SELECT 1 must work before the
    migrations (or the tests) create the schema."""
    url = make_url(database_url)
    server = URL.create(url.drivername, url.username, url.password, url.host, url.port)
    return server.render_as_string(hide_password=False)


async def mysql_answers(server_url: str) -> bool:
    engine = create_async_engine(server_url, poolclass=NullPool,
                                 connect_args={"connect_timeout": 3})
    try:
        async with asyncio.timeout(5):
            async with engine.connect() as conn:
                return (await conn.execute(text("SELECT 1"))).scalar() == 1
    except (SQLAlchemyError, OSError, TimeoutError):
        return False
    finally:
        await engine.dispose()


async def redis_answers(url: str) -> bool:
    client = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        return bool(await client.ping())
    except (RedisError, OSError):
        return False
    finally:
        await client.aclose()


async def unreachable(stores: Datastores) -> Datastores:
    mysql = [url for url in stores.mysql_servers if not await mysql_answers(url)]
    redis = [url for url in stores.redis_urls if not await redis_answers(url)]
    return Datastores(tuple(mysql), tuple(redis))


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname
    if host in (None, "", "localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def run_command(log: LogStream, name: str, *argv: str,
                      env: Mapping[str, str] | None = None) -> int:
    """Run a command to completion, its output prefixed with `name`."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL, env=dict(env) if env is not None else None,
    )
    assert process.stdout is not None
    async for raw in process.stdout:
        log.line(name, raw.decode(errors="replace").rstrip())
    return await process.wait()


async def command_succeeds(*argv: str) -> bool:
    if shutil.which(argv[0]) is None:
        return False
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await process.wait() == 0


async def poll_until(check: Callable[[], Awaitable[bool]]) -> None:
    """Ask `check` twice a second until it says yes; the caller bounds it with a timeout."""
    while True:
        if await check():
            return
        await asyncio.sleep(0.5)


async def compose_command() -> list[str] | None:
    """Compose v2 (`docker compose`), else v1 (`docker-compose`, Debian's package), else None."""
    if await command_succeeds("docker", "compose", "version"):
        return ["docker", "compose"]
    if await command_succeeds("docker-compose", "version"):
        return ["docker-compose"]
    return None


async def ensure_datastores(log: LogStream, stores: Datastores) -> None:
    missing = await unreachable(stores)
    if not missing.mysql_servers and not missing.redis_urls:
        log.run("datastores: MySQL and Redis already answer (SELECT 1, PING); using them")
        return
    remote = [u for u in (*missing.mysql_servers, *missing.redis_urls) if not is_loopback(u)]
    if remote:
        raise SetupError(f"cannot reach {', '.join(_redact(u) for u in remote)}; "
                         "it is not on this machine, so nothing is started for it")

    compose = await compose_command() if await command_succeeds("docker", "info") else None
    if compose is not None:
        log.run(f"datastores: not answering; path taken: Docker ({COMPOSE_DEPS.name})")
        up = [*compose, "-p", DEPS_PROJECT, "-f", str(COMPOSE_DEPS), "up", "-d"]
        # Compose v2 waits for the healthchecks itself; with v1 the polling below does.
        code = await run_command(log, "docker", *up, *(["--wait"] if len(compose) == 2 else []))
        if code != 0:
            raise SetupError("docker compose could not start MySQL and Redis (see above)")
        log.run("they keep running; stop them with: "
                f"{' '.join(compose)} -p {DEPS_PROJECT} -f {COMPOSE_DEPS} down")
    else:
        log.run("datastores: not answering and no Docker engine; path taken: OS packages")
        await start_from_os_packages(log, mysql=bool(missing.mysql_servers),
                                     redis=bool(missing.redis_urls))

    try:
        async with asyncio.timeout(DATASTORE_TIMEOUT_SECONDS):
            for url in missing.mysql_servers:
                await poll_until(partial(mysql_answers, url))
            for url in missing.redis_urls:
                await poll_until(partial(redis_answers, url))
    except TimeoutError:
        raise SetupError(
            f"MySQL/Redis did not answer within {DATASTORE_TIMEOUT_SECONDS:.0f}s") from None
    log.run("datastores: MySQL and Redis answer")


async def start_from_os_packages(log: LogStream, *, mysql: bool, redis: bool) -> None:
    if os.geteuid() != 0:
        raise SetupError("starting MariaDB/Redis from OS packages needs root; either start them "
                         "yourself or run: sudo apt-get install -y mariadb-server redis-server")
    mariadb_installed = await asyncio.to_thread(MARIADBD.exists)
    packages = ([] if mariadb_installed or not mysql else ["mariadb-server"]) + (
        [] if shutil.which("redis-server") or not redis else ["redis-server"])
    if packages:
        log.run(f"installing {' '.join(packages)} with apt-get")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if (await run_command(log, "apt", "apt-get", "update", env=env) != 0
                or await run_command(log, "apt", "apt-get", "install", "-y", *packages,
                                     env=env) != 0):
            raise SetupError(f"apt-get install {' '.join(packages)} failed (see above)")
    if mysql:
        log.run("starting mariadbd")
        await run_command(log, "run", "install", "-d", "-o", "mysql", "-g", "mysql", "/run/mysqld")
        await run_command(log, "run", "start-stop-daemon", "--start", "--oknodo", "--background",
                          "--exec", str(MARIADBD), "--", "--user=mysql")
        if "mariadb-server" in packages:
            await allow_local_root_over_tcp(log)
    if redis:
        log.run("starting redis-server")
        await run_command(log, "redis", "redis-server", "--daemonize", "yes", "--bind",
                          "127.0.0.1", "--port", "6379", "--save", "", "--appendonly", "no")


async def allow_local_root_over_tcp(log: LogStream) -> None:
    """A fresh Debian MariaDB lets root in only through the socket; the dev URLs use TCP."""
    try:
        async with asyncio.timeout(DATASTORE_TIMEOUT_SECONDS):
            await poll_until(partial(command_succeeds, "mariadb-admin", "ping"))
    except TimeoutError:
        raise SetupError("mariadbd did not start") from None
    log.run("fresh MariaDB: letting root@localhost in over TCP without a password (dev only)")
    await run_command(log, "run", "mariadb", "-uroot", "-e",
                      "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket "
                      "OR mysql_native_password USING PASSWORD('')")


def _redact(url: str) -> str:
    if url.startswith("redis"):
        return url
    return make_url(url).render_as_string(hide_password=True)


# --- 4. The services -------------------------------------------------------------------------


@dataclass
class RunningService:
    service: App
    process: asyncio.subprocess.Process
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_LINES))
    pump: asyncio.Task[None] | None = None


def uvicorn_command(service: App, *, host: str) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "--factory", service.factory, "--host", host,
        "--port", str(service.port), "--no-access-log", "--timeout-graceful-shutdown", "5",
        # uvicorn would otherwise believe X-Forwarded-For from loopback peers; the gateway
        # resolves client addresses itself (GATEWAY_TRUSTED_PROXY_NETWORKS).
        "--no-proxy-headers",
        # No `server: uvicorn` in answers: it tells an attacker which bugs to try.
        "--no-server-header",
        # A sale's opening connects thousands at once: twice uvicorn's 2,048 (Linux caps it
        # at net.core.somaxconn, 4,096 by default); a connection past the backlog waits for a
        # SYN retry, a second or more.
        "--backlog", str(LISTEN_BACKLOG),
    ]


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A preexec function that has the kernel send the child SIGTERM when this process dies,
    however it dies (kill -9 included), so no service outlives `make run`. Linux only; None
    elsewhere. The library is loaded here, before any fork: the child only makes the call."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        # The parent may have died between the fork and the call: then no signal will come.
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


async def spawn_child(argv: Sequence[str], env: Mapping[str, str]) -> asyncio.subprocess.Process:
    """A child that cannot outlive this process, its output piped to us."""
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env=dict(env),
        # A process group of its own: Ctrl-C reaches only this runner, which stops the services.
        start_new_session=True, limit=1 << 20, preexec_fn=die_with_parent(os.getpid()),
    )


async def start_service(log: LogStream, service: App, *, host: str,
                        env: Mapping[str, str]) -> RunningService:
    process = await spawn_child(uvicorn_command(service, host=host), env)
    running = RunningService(service, process)
    running.pump = asyncio.create_task(_pump_output(log, running))
    return running


async def _pump_output(log: LogStream, running: RunningService) -> None:
    assert running.process.stdout is not None
    async for raw in running.process.stdout:
        line = raw.decode(errors="replace").rstrip()
        running.recent.append(line)
        log.app_line(running.service.name, line)


async def first_exit(services: Sequence[RunningService]) -> RunningService:
    waits = {asyncio.create_task(s.process.wait()): s for s in services}
    try:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        return waits[done.pop()]
    finally:
        for task in waits:
            task.cancel()


async def wait_healthy(services: Sequence[RunningService], *, host: str) -> None:
    pending = {s.service.name: f"http://{host}:{s.service.port}/healthz" for s in services}
    async with httpx.AsyncClient(timeout=1.0) as client:
        while pending:
            for name, url in list(pending.items()):
                try:
                    if (await client.get(url)).status_code == 200:
                        del pending[name]
                except httpx.HTTPError:
                    pass
            if pending:
                await asyncio.sleep(0.2)


async def stop_all(log: LogStream, services: Sequence[RunningService]) -> None:
    async def stop(running: RunningService) -> None:
        process = running.process
        if process.returncode is None:
            try:
                process.terminate()
                await asyncio.wait_for(process.wait(), STOP_GRACE_SECONDS)
            except ProcessLookupError:
                pass
            except TimeoutError:
                log.run(f"{running.service.name} ignored SIGTERM for "
                        f"{STOP_GRACE_SECONDS:.0f}s; killing it")
                process.kill()
                await process.wait()
        if running.pump is not None:
            await running.pump

    await asyncio.gather(*(stop(s) for s in services))


def development_environment(data_dir: Path = DATA_DIR) -> dict[str, str]:
    """What every process of `make run` shares, unless the caller set it: the development
    environment (settings default to production, which refuses the password-less local
    database) and the identity keys (each signing app's private key and every public key), kept
    in .data/identity-keys/ (the caller's own, if it sets IDENTITY_PUBLIC_KEYS and the private
    keys)."""
    environment = {"APP_ENV": os.environ.get("APP_ENV", "development")}
    if not os.environ.get(PUBLIC_KEYS_VARIABLE):
        environment.update(load_or_create_identity_keys(data_dir))
    return environment


def service_environment(services: Sequence[App], sink: MailSink | None) -> dict[str, str]:
    env = {**os.environ, **development_environment(), "PYTHONUNBUFFERED": "1"}
    for service in services:
        if service in SERVICES:
            env.setdefault(f"GATEWAY_{service.env_prefix}_SERVICE_URL", service.local_url)
        if service.internal_port is not None:  # the other services call it there
            env.setdefault(f"{service.env_prefix}_INTERNAL_PORT", str(service.internal_port))
    if sink is not None:
        env.update(SMTP_HOST=sink.host, SMTP_PORT=str(sink.port), SMTP_STARTTLS="false")
    return env


def print_try_it(log: LogStream, gateway: str, sink: MailSink | None) -> None:
    api = f"{gateway}/api/v1"
    json = "-H 'content-type: application/json'"
    where_mail = (f"the code shows on a 'mail' line above; the message is in "
                  f"{MAIL_DIR.relative_to(REPO_ROOT)}/" if sink is not None
                  else f"mail goes out through {os.environ.get('SMTP_HOST')}; read the code "
                       "from your inbox")
    for line in (
        f"ready: gateway on {gateway} (docs {gateway}/docs); Ctrl-C stops everything",
        "try it:",
        f"  curl -s {api}/auth/signup {json} -d '{{\"email\":\"me@example.com\","
        f"\"password\":\"correct horse battery\",\"name\":\"Me\"}}'",
        f"  # {where_mail}",
        f"  curl -s {api}/auth/verify-email {json} -d '{{\"email\":\"me@example.com\","
        f"\"code\":\"NNNNNN\"}}'",
        f"  curl -s {api}/auth/login {json} -d '{{\"email\":\"me@example.com\","
        f"\"password\":\"correct horse battery\"}}'",
        f"  curl -s {api}/users/me -H \"Authorization: Bearer $ACCESS_TOKEN\"",
    ):
        log.run(line)
    if sink is not None:
        log.run(f"mail: SMTP sink on {sink.host}:{sink.port} -> {sink.directory}/")


async def race(running: Sequence[RunningService], stop_requested: asyncio.Event,
               work: Awaitable[None] | None = None) -> RunningService | str:
    """Whichever comes first: a service exits (returned), "stop" is asked for, or `work`
    finishes ("ready") or times out ("timeout")."""
    exited = asyncio.create_task(first_exit(running))
    stopped = asyncio.create_task(stop_requested.wait())
    worked = asyncio.ensure_future(work) if work is not None else None
    tasks: set[asyncio.Future[Any]] = {exited, stopped}
    if worked is not None:
        tasks.add(worked)
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
    if exited in done:
        return exited.result()
    if stopped in done:
        return "stop"
    assert worked is not None
    return "timeout" if worked.exception() is not None else "ready"


async def supervise(log: LogStream, services: Sequence[App], sink: MailSink | None) -> int:
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop_requested.set)

    host = "127.0.0.1"
    gateway_host = os.environ.get("GATEWAY_HOST", host)
    env = service_environment(services, sink)
    # The services first, the gateway once they answer: it fetches user_service's JWKS at start.
    phases = [[s for s in services if s.package != "gateway"],
              [s for s in services if s.package == "gateway"]]
    running: list[RunningService] = []
    try:
        outcome: RunningService | str = "ready"
        for phase in phases:
            if not phase:
                continue
            started = [await start_service(log, s, host=gateway_host if s.package == "gateway"
                                           else host, env=env) for s in phase]
            running.extend(started)
            log.run(f"started {', '.join(s.name for s in phase)}; waiting for /healthz")
            health = asyncio.wait_for(wait_healthy(started, host=host), HEALTHY_TIMEOUT_SECONDS)
            outcome = await race(running, stop_requested, health)
            if outcome != "ready":
                break
        if outcome == "ready":
            gateway_port = next((s.port for s in services if s.package == "gateway"), None)
            gateway = f"http://{host}:{gateway_port}" if gateway_port else "(gateway not started)"
            print_try_it(log, gateway, sink)
            outcome = await race(running, stop_requested)

        if isinstance(outcome, RunningService):
            if outcome.pump is not None:
                await outcome.pump
            log.run(f"{outcome.service.name} exited on its own with code "
                    f"{outcome.process.returncode}; stopping everything. Its last lines:")
            for line in outcome.recent:
                log.app_line(outcome.service.name, line)
            return 1
        if outcome == "timeout":
            log.run(f"not every service answered /healthz within "
                    f"{HEALTHY_TIMEOUT_SECONDS:.0f}s; stopping")
            return 1
        log.run("stopping")
        return 0
    finally:
        await stop_all(log, running)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        log.run("all services stopped")


# --- The whole run ---------------------------------------------------------------------------


async def start_mail_sink(log: LogStream) -> MailSink | None:
    if os.environ.get("SMTP_HOST"):
        log.run(f"mail: SMTP_HOST={os.environ['SMTP_HOST']} is set; sending real mail through it")
        return None

    def report(mail: StoredMail) -> None:
        log.line("mail", mail.describe())

    try:
        return await MailSink(MAIL_DIR, port=1025, on_mail=report).start()
    except OSError:  # 1025 taken: any free port will do, user_service is told which
        return await MailSink(MAIL_DIR, port=0, on_mail=report).start()


async def run(service_names: Sequence[str], *, json_logs: bool = False) -> int:
    log = LogStream(sys.stdout, raw_json=json_logs)
    services = [s for s in all_services() if not service_names or s.name in service_names
                or s.package in service_names]
    database_services = [s.package for s in services if s.has_database]
    sink: MailSink | None = None
    try:
        await ensure_datastores(log, configured_datastores(services))
        if database_services:
            code = await run_command(log, "migrate", sys.executable, "-m", "deploy.migrate",
                                     *database_services)
            if code != 0:
                raise SetupError("migrations failed (see above)")
        sink = await start_mail_sink(log)
        return await supervise(log, services, sink)
    except SetupError as error:
        log.run(f"error: {error}")
        return 1
    finally:
        if sink is not None:
            await sink.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    names = [s.name for s in all_services()]
    parser.add_argument("services", nargs="*", metavar="SERVICE",
                        help=f"start only these ({', '.join(names)}); default: all")
    parser.add_argument("--json-logs", action="store_true",
                        help="print the apps' JSON log lines as they are, not rendered")
    args = parser.parse_args()
    unknown = set(args.services) - set(names) - {s.package for s in all_services()}
    if unknown:
        parser.error(f"unknown service(s): {', '.join(sorted(unknown))}")
    os.chdir(REPO_ROOT)
    DATA_DIR.mkdir(exist_ok=True)
    # Before any settings are read: the datastore check and the migrations read them too.
    os.environ.update(development_environment())
    try:
        code = asyncio.run(run(args.services, json_logs=args.json_logs))
    except KeyboardInterrupt:  # Ctrl-C before the services started: nothing of ours is running
        print("run     | interrupted during set-up", flush=True)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
