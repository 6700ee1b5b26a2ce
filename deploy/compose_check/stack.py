"""The compose project under check: docker-compose.yml plus the override that swaps image names,
run under a project name of its own so an operator's stack is never touched."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deploy.compose_check.commands import CheckError, Deadline, run, tail

PROJECT = "preorder-compose-check"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
# What the caller's environment may hand to compose; nothing else, so that a variable left over
# in someone's shell cannot change what is checked (the defaults, with nothing done first).
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "DOCKER_HOST", "DOCKER_CONFIG",
                  "DOCKER_CONTEXT", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY")
GATEWAY_PORT_VARIABLE = "COMPOSE_GATEWAY_PORT"
# The compose profiles the check brings up beside the default services.
PROFILES = ("observability",)
DEFAULT_GATEWAY_PORT = 8000


def image_override(services: Mapping[str, Any], app_image: str,
                   replacements: Mapping[str, str]) -> dict[str, Any]:
    """The override file: each service keeps everything but its image name. Services built from
    deploy/Dockerfile run `app_image`; the others the replacement of their official image."""
    override: dict[str, dict[str, str]] = {}
    for name, definition in sorted(services.items()):
        current = str(definition.get("image", ""))
        if definition.get("build"):
            override[name] = {"image": app_image}
        elif replacements.get(current, current) != current:
            override[name] = {"image": replacements[current]}
    return {"services": override}


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _any_free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def gateway_binding() -> tuple[str, int]:
    """Where the gateway is published: $COMPOSE_GATEWAY_PORT ([ADDRESS:]PORT) if set, else
    127.0.0.1:8000, or another free loopback port when 8000 is taken (say by `make run`)."""
    requested = os.environ.get(GATEWAY_PORT_VARIABLE, "").strip()
    if requested:
        host, _, port = requested.rpartition(":")
        if not port.isdigit():
            raise CheckError(f"{GATEWAY_PORT_VARIABLE}={requested!r} is not [ADDRESS:]PORT")
        return host or "127.0.0.1", int(port)
    if _port_is_free("127.0.0.1", DEFAULT_GATEWAY_PORT):
        return "127.0.0.1", DEFAULT_GATEWAY_PORT
    return "127.0.0.1", _any_free_port("127.0.0.1")


@dataclass(frozen=True)
class ContainerState:
    id: str
    name: str
    service: str
    status: str
    health: str  # "" when the container has no health check

    @property
    def ready(self) -> bool:
        return self.status == "running" and self.health in ("", "healthy")

    def describe(self) -> str:
        return f"{self.service} {self.status}" + (f" ({self.health})" if self.health else "")


@dataclass
class Stack:
    compose: list[str]
    files: list[Path]
    env_file: Path
    gateway_host: str
    gateway_port: int
    project: str = PROJECT

    @property
    def environment(self) -> dict[str, str]:
        env = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
        env[GATEWAY_PORT_VARIABLE] = f"{self.gateway_host}:{self.gateway_port}"
        env["COMPOSE_PROFILES"] = ",".join(PROFILES)
        return env

    def run(self, *args: str, timeout: float, check: bool = True) -> subprocess.CompletedProcess[str]:
        files = [argument for path in self.files for argument in ("-f", str(path))]
        # An env file of its own (the development override): a developer's .env (say a key
        # from `make keys`) must not take the place of what the check is about.
        command = [*self.compose, "-p", self.project, *files, "--env-file", str(self.env_file),
                   *args]
        return run(command, timeout=timeout, env=self.environment, check=check,
                   cwd=self.files[0].parent)

    def config(self) -> dict[str, Any]:
        document = yaml.safe_load(self.run("config", timeout=60).stdout)
        if not isinstance(document, dict):
            raise CheckError("`compose config` printed no mapping")
        return document

    def containers(self) -> list[ContainerState]:
        listed = run(["docker", "ps", "-aq", "--filter", f"label={PROJECT_LABEL}={self.project}"],
                     timeout=30)
        ids = listed.stdout.split()
        if not ids:
            return []
        template = ("{{json .Id}} {{json .Name}} {{json (index .Config.Labels \"" + SERVICE_LABEL +
                    "\")}} {{json .State.Status}} "
                    "{{if .State.Health}}{{json .State.Health.Status}}{{else}}\"\"{{end}}")
        inspected = run(["docker", "inspect", "--format", template, *ids], timeout=30)
        states = []
        for line in inspected.stdout.splitlines():
            container_id, name, service, status, health = (json.loads(f) for f in line.split(" "))
            states.append(ContainerState(container_id, name.lstrip("/"), service, status, health))
        return sorted(states, key=lambda state: (state.service, state.name))

    def container_of(self, service: str) -> str:
        for state in self.containers():
            if state.service == service and state.status == "running":
                return state.id
        raise CheckError(f"no running container of {service}")

    def wait_until_ready(self, services: list[str], seconds: float) -> list[ContainerState]:
        """Every service has a container, running, and healthy where it has a health check."""
        deadline = Deadline(seconds)
        states: list[ContainerState] = []
        while not deadline.passed():
            states = self.containers()
            present = {state.service for state in states}
            if set(services) <= present and all(state.ready for state in states):
                return states
            time.sleep(2)
        missing = sorted(set(services) - {state.service for state in states})
        waiting = [state for state in states if not state.ready]
        logs = ""
        for state in waiting:
            printed = run(["docker", "logs", "--tail", "15", state.id], timeout=30, check=False)
            logs += f"\n--- {state.name}\n{tail(printed.stdout + printed.stderr)}"
        raise CheckError(f"not ready within {seconds:.0f} s: "
                         f"{', '.join([*(s.describe() for s in waiting), *missing])}{logs}")

    def save_logs(self, path: Path) -> None:
        result = self.run("logs", "--no-color", "--tail", "300", timeout=120, check=False)
        path.write_text(result.stdout + result.stderr)

    def leftovers(self) -> list[str]:
        found = []
        for kind in ("container", "volume", "network"):
            listing = ["docker", kind, "ls", "-q", "--filter", f"label={PROJECT_LABEL}={self.project}"]
            if kind == "container":
                listing.insert(3, "-a")
            for item in run(listing, timeout=30).stdout.split():
                found.append(f"{kind} {item[:12]}")
        return found
