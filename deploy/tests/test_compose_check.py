"""The compose check's own logic, without a Docker engine: the override changes image names and
nothing else, image tags follow content, the gateway's port is chosen around a busy one, the
image probe sees development tools, and the Mailpit stand-in answers Mailpit's API."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import sys
from email.message import EmailMessage
from pathlib import Path
from types import ModuleType
from typing import Any

import aiosmtplib
import httpx
import pytest
import yaml

from deploy.compose_check import stack
from deploy.compose_check.checks import Report, StopChecks
from deploy.compose_check.commands import CheckError
from deploy.compose_check.images import (
    OPTIONAL_REPOSITORIES,
    STANDIN_FOR_REPOSITORY,
    STANDINS_DIR,
    content_hash,
    pip_ca_bundle,
    repository_of,
)
from deploy.compose_check.probes import image_contents
from deploy.compose_check.stack import gateway_binding, image_override

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("image", "repository"), [
    ("mysql:8.4", "mysql"),
    ("redis:7", "redis"),
    ("axllent/mailpit", "axllent/mailpit"),
    ("axllent/mailpit:v1.20", "axllent/mailpit"),
    ("python:3.12-slim", "python"),
    ("registry.local:5000/team/app:1", "registry.local:5000/team/app"),
])
def test_repository_of(image: str, repository: str) -> None:
    assert repository_of(image) == repository


def test_every_official_image_of_the_compose_file_has_a_stand_in() -> None:
    services = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    official = {repository_of(s["image"]) for s in services.values() if "build" not in s}
    # Grafana is optional: left out (and said so) where it cannot be pulled.
    assert official - OPTIONAL_REPOSITORIES | {"python"} == set(STANDIN_FOR_REPOSITORY)
    assert official >= OPTIONAL_REPOSITORIES
    for name in STANDIN_FOR_REPOSITORY.values():
        assert (STANDINS_DIR / name / "Dockerfile").is_file()


def test_the_override_changes_image_names_only() -> None:
    services: dict[str, Any] = yaml.safe_load(
        (REPO_ROOT / "docker-compose.yml").read_text())["services"]
    replacements = {services["mysql"]["image"]: "standin/mysql:1",
                    services["redis"]["image"]: "standin/redis:1"}
    override = image_override(services, "preorder-app:check-1", replacements)["services"]
    built = {name for name, s in services.items() if "build" in s}
    assert built, "the apps are built from deploy/Dockerfile"
    assert set(override) == built | {"mysql", "redis"}, "mailpit's image was not replaced"
    assert all(list(entry) == ["image"] for entry in override.values())
    assert {override[name]["image"] for name in built} == {"preorder-app:check-1"}
    assert override["mysql"] == {"image": "standin/mysql:1"}


def test_content_hash_follows_names_content_and_the_executable_bit(tmp_path: Path) -> None:
    script = tmp_path / "entrypoint.sh"
    script.write_text("echo one\n")
    other = tmp_path / "Dockerfile"
    other.write_text("FROM base\n")
    first = content_hash("base-id", tmp_path, [script, other])
    assert content_hash("base-id", tmp_path, [other, script]) == first, "order does not matter"
    assert content_hash("other-base", tmp_path, [script, other]) != first
    script.chmod(0o755)
    assert content_hash("base-id", tmp_path, [script, other]) != first
    script.chmod(0o644)
    assert content_hash("base-id", tmp_path, [script, other]) == first
    script.write_text("echo two\n")
    assert content_hash("base-id", tmp_path, [script, other]) != first


def test_the_gateway_port_can_be_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPOSE_GATEWAY_PORT", "18080")
    assert gateway_binding() == ("127.0.0.1", 18080)
    monkeypatch.setenv("COMPOSE_GATEWAY_PORT", "0.0.0.0:18081")
    assert gateway_binding() == ("0.0.0.0", 18081)
    monkeypatch.setenv("COMPOSE_GATEWAY_PORT", "eighty")
    with pytest.raises(CheckError):
        gateway_binding()


def test_a_busy_default_port_is_avoided(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COMPOSE_GATEWAY_PORT", raising=False)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        monkeypatch.setattr(stack, "DEFAULT_GATEWAY_PORT", taken)
        host, port = gateway_binding()
    assert host == "127.0.0.1"
    assert port != taken


def test_the_image_probe_sees_development_tools_and_tests() -> None:
    # Run here, in the development environment, it must find what it looks for in an image.
    assert image_contents.importable("pytest")
    assert image_contents.importable("deploy.compose_check")
    assert not image_contents.importable("no_such_parent.child")
    found = image_contents.project_test_directories(["deploy"])
    assert str(REPO_ROOT / "deploy" / "tests") in found


def _load_mailpit_standin() -> ModuleType:
    path = STANDINS_DIR / "mailpit" / "mailpit_standin.py"
    spec = importlib.util.spec_from_file_location("mailpit_standin", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_the_mailpit_stand_in_answers_mailpits_api() -> None:
    standin = _load_mailpit_standin()
    smtp_server, http_server = await standin.start(
        standin.Mailbox(), ("127.0.0.1", 0), ("127.0.0.1", 0))
    smtp_port = smtp_server.sockets[0].getsockname()[1]
    api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_server.server_address[1]}",
                            timeout=5)
    try:
        for recipient, code in (("first@example.com", "123456"), ("second@example.com", "654321")):
            message = EmailMessage()
            message["From"] = "Preorder <no-reply@preorder.local>"
            message["To"] = recipient
            message["Subject"] = "Your verification code"
            message.set_content(f"Your verification code is {code}.")
            await aiosmtplib.send(message, hostname="127.0.0.1", port=smtp_port, timeout=5)

        listing = (await api.get("/api/v1/messages")).json()
        assert listing["total"] == 2
        assert [m["To"][0]["Address"] for m in listing["messages"]] == [
            "second@example.com", "first@example.com"], "newest first"

        found = (await api.get("/api/v1/search", params={"query": "to:first@example.com"})).json()
        assert found["messages_count"] == 1
        summary = found["messages"][0]
        assert summary["From"] == {"Name": "Preorder", "Address": "no-reply@preorder.local"}
        assert summary["Subject"] == "Your verification code"

        detail = await api.get(f"/api/v1/message/{summary['ID']}")
        assert detail.status_code == 200
        assert "123456" in detail.json()["Text"]
        assert "654321" in (await api.get("/api/v1/message/latest")).json()["Text"]
        assert (await api.get("/api/v1/message/nope")).status_code == 404
        assert (await api.get("/readyz")).status_code == 200

        assert (await api.delete("/api/v1/messages")).status_code == 200
        assert (await api.get("/api/v1/messages")).json()["total"] == 0
    finally:
        await api.aclose()
        smtp_server.close()
        await asyncio.to_thread(http_server.shutdown)
        http_server.server_close()


def test_a_report_prints_one_line_per_check_and_stops_at_a_failure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = Report()
    report.check("first", lambda: "fine")

    def broken() -> str:
        raise CheckError("gateway not ready\nlast log lines")

    with pytest.raises(StopChecks):
        report.check("second", broken)
    def buggy() -> str:
        settings: dict[str, str] = {}
        return settings["missing"]

    with pytest.raises(StopChecks):
        report.check("third", buggy)
    assert (report.passed, report.failed) == (1, 2)
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == ["ok    first: fine", "FAIL  second: gateway not ready",
                         "      last log lines"]
    assert lines[3] == "FAIL  third: KeyError: 'missing'"


def test_the_build_ca_bundle_is_read_from_pip_cert_at_run_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("PIP_CERT", str(bundle))
    assert pip_ca_bundle() == bundle
    monkeypatch.setenv("PIP_CERT", str(tmp_path / "missing.pem"))
    assert pip_ca_bundle() is None
