"""The stack file `make swarm-check` deploys: docker-compose.yml's services and settings, with
replicas, swarm's DNS round robin instead of virtual IPs, host-mode ports, and the images the
check built. Written as JSON (which is YAML) next to the check's other state."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
INIT_SQL = REPO_ROOT / "deploy" / "mysql" / "init.sql"
# docker-compose.yml requires its secrets (`${VAR:?}`); the stack runs the development override.
DEVELOPMENT_ENV = REPO_ROOT / "deploy" / "development.env"

# Several tasks behind each name: the sale's path twice over, the rest (and any app added to
# docker-compose.yml later) once.
# The card processor simulator runs once: its ledger lives in its memory.
REPLICAS = {"gateway": 1, "user-service": 1, "product-service": 2, "order-service": 2,
            "payment-service": 2, "stock-service": 2, "social-service": 1, "mysql": 1, "redis": 1,
            "processor-sim": 1}
# The mail sink is left out: nothing in a sale sends mail (accounts are seeded verified).
LEFT_OUT = {"mailpit"}
_DEFAULTED = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


@dataclass(frozen=True, kw_only=True)
class StackImages:
    app: str
    mysql: str
    redis: str


@dataclass(frozen=True, kw_only=True)
class StackPorts:
    """Host-mode ports on the node: the gateway's, MySQL's for the seeding and the checker, and
    Redis's for the checker (the line's records)."""

    gateway: int
    mysql: int
    redis: int


def resolve(value: str, overrides: Mapping[str, str]) -> str:
    """compose's `${VAR:-default}` (and a required `${VAR:?message}`) as compose would with only
    `overrides` in the environment."""
    return _DEFAULTED.sub(lambda m: overrides.get(
        m.group(1), m.group(3) or "" if m.group(2) == "-" else ""), value)


def development_env() -> dict[str, str]:
    """deploy/development.env's variables."""
    pairs = (line.split("=", 1) for line in DEVELOPMENT_ENV.read_text().splitlines()
             if line.strip() and not line.startswith("#"))
    return {name: value for name, value in pairs}


def _environment(raw: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for name, value in raw.items():
        if value is None:  # passed through from the environment when set: only ours are
            if name in overrides:
                env[name] = overrides[name]
            continue
        env[name] = resolve(str(value), overrides)
    for name, value in overrides.items():
        if name in raw:
            env[name] = value
    return env


def stack_file(images: StackImages, ports: StackPorts, overrides: Mapping[str, str],
               compose_file: Path = COMPOSE_FILE) -> dict[str, Any]:
    """docker-compose.yml as a swarm stack. `overrides` are variables the stack is run with
    (keys, short timings), applied wherever compose reads them, over the development
    override's."""
    overrides = {**development_env(), **overrides}
    compose = yaml.safe_load(compose_file.read_text())
    services: dict[str, Any] = {}
    for name, definition in compose["services"].items():
        # A service of an optional compose profile (observability) is not part of the sale.
        if name in LEFT_OUT or definition.get("profiles"):
            continue
        service: dict[str, Any] = {
            "environment": _environment(definition.get("environment", {}), overrides),
            "deploy": {
                "replicas": REPLICAS.get(name, 1),
                # Swarm's virtual IPs need IPVS, which these machines lack; with dnsrr the
                # name resolves to every task's address and the clients spread across them.
                "endpoint_mode": "dnsrr",
                "restart_policy": {"condition": "any", "delay": "2s"},
            },
        }
        if "healthcheck" in definition:
            service["healthcheck"] = definition["healthcheck"]
        if "build" in definition:
            service.update(image=images.app, entrypoint=definition["entrypoint"],
                           command=definition["command"])
        elif name == "mysql":
            service.update(image=images.mysql, volumes=[{
                "type": "bind", "source": str(INIT_SQL),
                "target": "/docker-entrypoint-initdb.d/init.sql", "read_only": True}])
        elif name == "redis":
            service.update(image=images.redis,
                           command=[resolve(part, overrides) for part in definition["command"]])
        else:
            raise ValueError(f"docker-compose.yml's {name!r} has no place in the swarm stack")
        published = {"gateway": (ports.gateway, 8000), "mysql": (ports.mysql, 3306),
                     "redis": (ports.redis, 6379)}.get(name)
        if published:
            service["ports"] = [{"target": published[1], "published": published[0],
                                 "protocol": "tcp", "mode": "host"}]
        services[name] = service
    missing = set(REPLICAS) - set(services)
    if missing:
        raise ValueError(f"docker-compose.yml lacks {sorted(missing)}")
    return {"version": "3.8", "services": services,
            "networks": {"default": {"driver": "overlay"}}}
