"""`python -m deploy.swarm_check` (`make swarm-check`); see the package's docstring."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from deploy.compose_check.commands import CheckError, Deadline, run, run_logged
from deploy.compose_check.engine import Apt, Engine, ensure_engine
from deploy.compose_check.images import ImageBuilder, dockerfile_python_image
from deploy.dev_keys import new_identity_environment, new_private_key_pem
from deploy.swarm_check.stack import (
    REPO_ROOT,
    StackImages,
    StackPorts,
    development_env,
    stack_file,
)
from shared.services import SERVICES
from shared.testing.net import free_port

STATE_DIR = REPO_ROOT / ".data" / "swarm-check"
# Its own name, so a compose check (or an operator's stack) on the same engine is never touched.
DEFAULT_STACK = "preorder-swarm-check"
UP_SECONDS = 600
DOWN_SECONDS = 180
# The stack's payment TTL; the load run must be told the same.
PAYMENT_TTL_SECONDS = 20
# A killed order task leaves holds whose order was never written; the orphan reconciler gives
# them back after this (compose's default is a minute), within the load run's wait for returns.
ORPHAN_TIMINGS = {"ORDER_ORPHAN_HOLD_AFTER_SECONDS": "10", "ORDER_ORPHAN_INTERVAL_SECONDS": "2"}
# A request in flight on a killed task has no answer: its buyer retries with the same
# Idempotency-Key (API.md's way), for well past a dead attempt's claim on the key (stale 6 s
# after its last renewal): a machine this loaded answers some retries only after tens of seconds.
RETRY_SECONDS = 120
# The line's settings for this stack (docs/line.md, docs/replicas.md): three order replicas on
# two shared cores decide no faster with compose's 64 places in flight per product, and with 8
# the places are decided close to their line's order; the single gateway reads an opening's
# burst in an order of its own by up to about half a second, which the settle window absorbs.
MAX_DECIDING = 8
SETTLE_SECONDS = 0.5
# The services whose tasks are killed mid-sale, and the one scaled up meanwhile.
KILLED = ("order-service", "stock-service")
SCALED = "order-service"
SCALED_TO = 3
DATABASE_PASSWORDS = {"user": "devonly-user-pw", "order": "devonly-order-pw",
                      "stock": "devonly-stock-pw", "payment": "devonly-payment-pw"}


@dataclass
class Faults:
    """What was done to the stack while the sale ran, for the report."""

    done: list[str] = field(default_factory=list)
    error: str | None = None


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    return run(["docker", *args], timeout=timeout, check=check).stdout.strip()


def swarm_state() -> str:
    return docker("info", "--format", "{{.Swarm.LocalNodeState}}")


def ensure_swarm() -> bool:
    """True if this check made the engine a swarm (and so leaves it again at the end)."""
    if swarm_state() == "active":
        return False
    docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    return True


def containers_of(stack: str, service: str) -> list[str]:
    return docker("ps", "-q", "--filter",
                  f"label=com.docker.swarm.service.name={stack}_{service}").split()


def running_replicas(stack: str) -> dict[str, str]:
    listed = docker("service", "ls", "--filter", f"label=com.docker.stack.namespace={stack}",
                    "--format", "{{.Name}} {{.Replicas}}")
    return dict(line.split(" ", 1) for line in listed.splitlines() if line)


def ended_tasks(stack: str) -> dict[str, int]:
    """Per service, the tasks that stopped (killed here, or restarted by swarm when unhealthy)."""
    ended: dict[str, int] = {}
    for service in running_replicas(stack):
        states = docker("service", "ps", "--format", "{{.CurrentState}}", service, check=False)
        count = sum(1 for state in states.splitlines() if not state.startswith("Running"))
        if count:
            ended[service.removeprefix(f"{stack}_")] = count
    return ended


def healthy_tasks(stack: str) -> int:
    return len(docker("ps", "-q", "--filter", f"label=com.docker.stack.namespace={stack}",
                      "--filter", "health=healthy").split())


def wait_until_up(stack: str, gateway_url: str, services: int, tasks: int) -> None:
    """Every task healthy, not only running: a task joins its name's DNS answer once it runs,
    which for a database service is while it still migrates (or waits for the lock to)."""
    deadline = Deadline(UP_SECONDS)
    while not deadline.passed():
        replicas = running_replicas(stack)
        full = len(replicas) == services and all(
            r.split(" ")[0].split("/")[0] == r.split(" ")[0].split("/")[1]
            for r in replicas.values())
        if full and healthy_tasks(stack) >= tasks:
            try:
                with urllib.request.urlopen(f"{gateway_url}/readyz", timeout=3) as answer:  # noqa: S310
                    if answer.status == 200:
                        return
            except OSError:
                pass
        time.sleep(2)
    raise CheckError(f"the stack was not up within {UP_SECONDS} s: {running_replicas(stack)}")


def orders_so_far(stack: str, root_password: str) -> int:
    [mysql] = containers_of(stack, "mysql")
    out = docker("exec", "-e", f"MYSQL_PWD={root_password}", mysql, "mysql", "-uroot", "-N",
                 "-e", "SELECT COUNT(*) FROM preorder_order.orders", check=False)
    return int(out) if out.isdigit() else 0


def inflict_faults(stack: str, root_password: str, faults: Faults, stop: threading.Event) -> None:
    """Once orders are arriving: kill one task of each KILLED service, and scale SCALED."""
    try:
        while not stop.is_set() and orders_so_far(stack, root_password) == 0:
            stop.wait(0.5)
        if stop.is_set():
            faults.error = "the sale ended before any order arrived"
            return
        faults.done.append(f"orders arriving at {time.strftime('%H:%M:%S')}")
        for service in KILLED:
            victim = containers_of(stack, service)[0]
            docker("kill", victim)
            faults.done.append(f"docker kill {service} task {victim[:12]}")
        docker("service", "scale", "--detach", f"{stack}_{SCALED}={SCALED_TO}")
        faults.done.append(f"docker service scale {SCALED}={SCALED_TO}")
    except Exception as exc:
        faults.error = repr(exc)


def load_environment(ports: StackPorts, keys: dict[str, str]) -> dict[str, str]:
    """What `make load --host` needs of the system: its databases, its signing keys, and
    order_service's Redis (as order_service's own user) for the line's records."""
    env = {**os.environ, "APP_ENV": "development", **keys}
    for name, password in DATABASE_PASSWORDS.items():
        env[f"{name.upper()}_DATABASE_URL"] = (
            f"mysql+asyncmy://{name}_svc:{password}@127.0.0.1:{ports.mysql}/preorder_{name}")
    password = development_env()["ORDER_REDIS_PASSWORD"]
    env["ORDER_REDIS_URL"] = f"redis://order_svc:{password}@127.0.0.1:{ports.redis}/0"
    return env


def retried_attempts(load_dir: Path) -> int:
    """Attempts answered 5xx (a request in flight on a killed task) that their buyer retried
    with the same Idempotency-Key: the crowd counts them apart from the buyers' answers."""
    outcomes = load_dir / "outcomes.json"
    if not outcomes.exists():
        return 0
    return int(json.loads(outcomes.read_text()).get("retried", 0))


def save_logs(stack: str, into: Path) -> None:
    """The logs of every gateway, order and stock task (the killed ones' too), kept after the
    stack is gone: what the services said while the sale ran. Best effort: a log that cannot be
    read is noted, never a failure of the check."""
    into.mkdir(parents=True, exist_ok=True)
    for service in ("gateway", "order-service", "stock-service"):
        tasks = docker("ps", "-aq", "--filter",
                       f"label=com.docker.swarm.service.name={stack}_{service}",
                       check=False).split()
        for task in tasks:
            try:
                logs = run(["docker", "logs", task], timeout=30, check=False)
                text = logs.stdout + logs.stderr
            except CheckError as error:
                text = f"not read: {error}\n"
            (into / f"{service}-{task[:12]}.log").write_text(text)


def take_down(stack: str, made_swarm: bool, engine: Engine | None) -> None:
    docker("stack", "rm", stack, check=False)
    deadline = Deadline(DOWN_SECONDS)
    while not deadline.passed() and docker(
            "ps", "-aq", "--filter", f"label=com.docker.stack.namespace={stack}", check=False):
        time.sleep(2)
    while not deadline.passed() and docker(
            "network", "ls", "-q", "--filter", f"name={stack}_", check=False):
        time.sleep(2)
    if made_swarm:
        docker("swarm", "leave", "--force", check=False)
    if engine is not None:
        engine.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--stack", default=os.environ.get("SWARM_CHECK_STACK", DEFAULT_STACK))
    parser.add_argument("--buyers", type=int, default=600)
    parser.add_argument("--stock", type=int, default=100)
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    parser.add_argument("--max-deciding", type=int, default=MAX_DECIDING,
                        help="ORDER_LINE_MAX_DECIDING for the stack")
    parser.add_argument("--settle", type=float, default=SETTLE_SECONDS,
                        help="ORDER_LINE_SETTLE_SECONDS for the stack")
    parser.add_argument("--no-faults", action="store_true",
                        default=os.environ.get("SWARM_CHECK_NO_FAULTS") == "1",
                        help="run the sale on the replicas without killing or scaling any "
                             "(to tell what the faults cost from what the replicas do)")
    args = parser.parse_args()
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    apt = Apt(STATE_DIR / "apt.log")
    engine: Engine | None = None
    made_swarm = False
    started = time.monotonic()
    try:
        engine = ensure_engine(apt, STATE_DIR)
        print(f"engine: {'; '.join(engine.notes)}", flush=True)
        made_swarm = ensure_swarm()
        builder = ImageBuilder(apt, STATE_DIR)
        python = builder.official_or_standin(dockerfile_python_image())
        images = StackImages(app=builder.app(python.name).name,
                             mysql=builder.official_or_standin("mysql:8.4").name,
                             redis=builder.official_or_standin("redis:7").name)
        print(f"images: {images}", flush=True)
        ports = StackPorts(gateway=free_port(), mysql=free_port(), redis=free_port())
        root_password = secrets.token_hex(16)
        keys = {"USER_JWT_PRIVATE_KEY": new_private_key_pem(), **new_identity_environment()}
        overrides = {"MYSQL_ROOT_PASSWORD": root_password, **keys,
                     "ORDER_PAYMENT_TTL_SECONDS": str(PAYMENT_TTL_SECONDS), **ORPHAN_TIMINGS,
                     "APP_ENV": "development"}
        if args.max_deciding is not None:
            overrides["ORDER_LINE_MAX_DECIDING"] = str(args.max_deciding)
        if args.settle is not None:
            overrides["ORDER_LINE_SETTLE_SECONDS"] = str(args.settle)
        stack = stack_file(images, ports, overrides)
        stack_path = STATE_DIR / "stack.json"
        stack_path.write_text(json.dumps(stack, indent=2) + "\n")
        stack_path.chmod(0o600)  # it holds this run's keys
        docker("stack", "rm", args.stack, check=False)
        run_logged(["docker", "stack", "deploy", "--compose-file", str(stack_path), args.stack],
                   STATE_DIR / "deploy.log", timeout=300)
        gateway_url = f"http://127.0.0.1:{ports.gateway}"
        wait_until_up(args.stack, gateway_url, len(stack["services"]),
                      sum(s["deploy"]["replicas"] for s in stack["services"].values()))
        print(f"stack {args.stack} up in {time.monotonic() - started:.0f} s: "
              f"{running_replicas(args.stack)}", flush=True)
        faults, stop = Faults(), threading.Event()
        chaos = threading.Thread(target=inflict_faults,
                                 args=(args.stack, root_password, faults, stop), daemon=True)
        if args.no_faults:
            faults.done.append("none (--no-faults)")
        else:
            chaos.start()
        load_dir = STATE_DIR / f"load-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        load = subprocess.run(
            [sys.executable, "-m", "loadtests.sale_run", "--host", gateway_url,
             "--buyers", str(args.buyers), "--stock", str(args.stock), "--browsers", "20",
             "--social", "10", "--workers", "1", "--ttl", str(PAYMENT_TTL_SECONDS),
             "--lead", "20", "--idempotent-retries", str(RETRY_SECONDS),
             "--out", str(load_dir)],
            env=load_environment(ports, keys), cwd=REPO_ROOT, timeout=1800, check=False)
        stop.set()
        if chaos.is_alive():
            chaos.join(timeout=30)
        replicas = running_replicas(args.stack)
        save_logs(args.stack, load_dir / "services")
        print("faults: " + "; ".join(faults.done), flush=True)
        print(f"replicas after the sale: {replicas}; tasks ended: {ended_tasks(args.stack)}",
              flush=True)
        print(f"attempts answered 5xx and retried with the same Idempotency-Key: "
              f"{retried_attempts(load_dir)}", flush=True)
        failures = []
        if faults.error:
            failures.append(f"faults: {faults.error}")
        if load.returncode != 0:
            failures.append(f"make load --host exited {load.returncode} (the checker's verdict "
                            "is above)")
        scaled_to = 2 if args.no_faults else SCALED_TO
        if replicas.get(f"{args.stack}_{SCALED}", "").split(" ")[0] != f"{scaled_to}/{scaled_to}":
            failures.append(f"{SCALED} did not reach {scaled_to} replicas")
        expected_apps = {f"{args.stack}_{app.name}-service" for app in SERVICES}
        if not expected_apps <= set(replicas):
            failures.append(f"services missing: {sorted(expected_apps - set(replicas))}")
    except CheckError as error:
        failures = [str(error)]
    finally:
        if not args.keep:
            take_down(args.stack, made_swarm, engine)
    took = time.monotonic() - started
    if failures:
        print(f"swarm-check: FAIL after {took:.0f} s: " + "; ".join(failures), flush=True)
        sys.exit(1)
    print(f"swarm-check: PASS in {took:.0f} s", flush=True)


if __name__ == "__main__":
    main()
