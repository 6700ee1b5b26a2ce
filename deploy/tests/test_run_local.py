"""The pieces of `make run` that decide what to start and how the services find each other."""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy.mail_sink import MailSink
from deploy.run_local import (
    LogStream,
    all_services,
    configured_datastores,
    development_environment,
    is_loopback,
    service_environment,
    uvicorn_command,
)
from shared.identity_keys import key_id, parse_private_key, parse_public_keys
from shared.services import SIGNERS


def test_the_eight_apps_on_their_fixed_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_PORT", raising=False)  # README: it moves the gateway
    assert {s.package: s.port for s in all_services()} == {
        "gateway": 8000, "user_service": 8001, "product_service": 8002, "order_service": 8003,
        "payment_service": 8004, "stock_service": 8005, "social_service": 8006,
        "payment_service.simulator": 8007,
    }


def test_datastores_come_from_the_services_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRODUCT_DATABASE_URL",
                       "mysql+asyncmy://me:pw@127.0.0.1:3307/preorder_product")
    monkeypatch.delenv("PRODUCT_REDIS_URL", raising=False)
    product = [s for s in all_services() if s.package == "product_service"]
    from product_service.settings import get_settings

    get_settings.cache_clear()
    try:
        stores = configured_datastores(product)
    finally:
        get_settings.cache_clear()
    # The server without the schema: SELECT 1 must work before migrations create it.
    assert stores.mysql_servers == ("mysql+asyncmy://me:pw@127.0.0.1:3307",)
    assert stores.redis_urls == ("redis://127.0.0.1:6379/0",)


@pytest.mark.parametrize(("url", "local"), [
    ("mysql+asyncmy://root@127.0.0.1:3306", True),
    ("mysql+asyncmy://root@localhost", True),
    ("redis://127.0.0.1:6379/0", True),
    ("redis://[::1]:6379/0", True),
    ("mysql+asyncmy://svc:pw@db.internal:3306", False),
    ("redis://10.0.0.5:6379/0", False),
])
def test_only_loopback_datastores_are_started_locally(url: str, local: bool) -> None:
    assert is_loopback(url) is local


async def test_services_get_the_sink_and_each_others_addresses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GATEWAY_STOCK_SERVICE_URL", "http://127.0.0.1:9005")
    async with MailSink(tmp_path, port=0) as sink:
        env = service_environment(all_services(), sink)
    assert env["SMTP_HOST"] == "127.0.0.1"
    assert env["SMTP_PORT"] == str(sink.port)
    assert env["SMTP_STARTTLS"] == "false"
    assert env["GATEWAY_USER_SERVICE_URL"] == "http://127.0.0.1:8001"
    assert env["GATEWAY_STOCK_SERVICE_URL"] == "http://127.0.0.1:9005"  # the caller's wins


def test_make_run_is_development_unless_the_caller_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings default to production, which refuses the password-less local database.
    monkeypatch.delenv("APP_ENV", raising=False)
    assert service_environment(all_services(), None)["APP_ENV"] == "development"
    monkeypatch.setenv("APP_ENV", "test")
    assert service_environment(all_services(), None)["APP_ENV"] == "test"


def test_each_signing_app_gets_its_own_identity_key_kept_in_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("IDENTITY_PUBLIC_KEYS", raising=False)
    first = development_environment(tmp_path)
    assert development_environment(tmp_path) == first  # kept
    (directory,) = tmp_path.iterdir()
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        f"{app.package}.key" for app in SIGNERS)
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in directory.iterdir())
    # Every app reads every public key; each private key is its own and matches its public one.
    public = parse_public_keys(first["IDENTITY_PUBLIC_KEYS"])
    for app in SIGNERS:
        key = parse_private_key(first[f"{app.env_prefix}_IDENTITY_PRIVATE_KEY"])
        assert public[key_id(key.public_key())][0] == app.package
    assert "STOCK_IDENTITY_PRIVATE_KEY" not in first  # stock_service calls no one
    # The caller's own keys, if it has them.
    monkeypatch.setenv("IDENTITY_PUBLIC_KEYS", "{}")
    assert "IDENTITY_PUBLIC_KEYS" not in development_environment(tmp_path)


def test_log_lines_carry_a_fixed_width_prefix() -> None:
    out = io.StringIO()
    log = LogStream(out)
    log.line("user", "started")
    log.line("gateway", "ready")
    assert out.getvalue() == "user    | started\ngateway | ready\n"


def test_apps_start_without_proxy_headers_or_a_server_header() -> None:
    # The gateway resolves client addresses itself; `server: uvicorn` only helps an attacker.
    entrypoint = (Path(__file__).resolve().parents[1] / "entrypoint.sh").read_text()
    for service in all_services():
        command = uvicorn_command(service, host="127.0.0.1")
        assert {"--no-proxy-headers", "--no-server-header"} <= set(command)
        assert command[command.index("--backlog") + 1] == "4096"  # the crowd's connects
    assert "--no-proxy-headers --no-server-header --backlog 4096" in entrypoint


def test_an_apps_json_line_is_rendered_for_a_terminal() -> None:
    out = io.StringIO()
    log = LogStream(out)
    log.app_line("order", json.dumps({
        "ts": "2026-12-06T04:41:45.281257Z", "level": "warning", "service": "order_service",
        "logger": "access", "msg": "POST /api/v1/orders 409", "request_id": "4ff03ddc1f412f67c2b",
        "extra": {"route": "/api/v1/orders", "status": 409, "duration_ms": 3.5},
        "exc": "Traceback (most recent call last):\nValueError: boom"}))
    assert out.getvalue().splitlines() == [
        "order   | 04:41:45 warning [4ff03ddc] POST /api/v1/orders 409 duration_ms=3.5",
        "order   |   Traceback (most recent call last):",
        "order   |   ValueError: boom",
    ]


def test_lines_that_are_not_json_and_json_asked_for_pass_as_they_are() -> None:
    out = io.StringIO()
    LogStream(out).app_line("user", "Traceback (most recent call last):")
    line = json.dumps({"ts": "2026-12-06T04:41:45Z", "level": "info", "msg": "up"})
    LogStream(out, raw_json=True).app_line("user", line)
    assert out.getvalue().splitlines() == ["user    | Traceback (most recent call last):",
                                           f"user    | {line}"]


SUPERVISOR = """
import asyncio, sys
from deploy.run_local import spawn_child

async def main():
    child = await spawn_child([sys.executable, "-c", "import time; time.sleep(60)"], {})
    print(child.pid, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has exited; only its parent's reaping is left


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_children_do_not_outlive_a_supervisor_killed_with_sigkill() -> None:
    supervisor = subprocess.Popen([sys.executable, "-c", SUPERVISOR], stdout=subprocess.PIPE,
                                  cwd=Path(__file__).resolve().parents[2], text=True)
    assert supervisor.stdout is not None
    child = int(supervisor.stdout.readline())
    try:
        assert _alive(child)
        supervisor.kill()  # SIGKILL: no handler, no cleanup of its own
        supervisor.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), "the child outlived its supervisor"
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)
