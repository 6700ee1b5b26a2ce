"""The benchmarks read each process's request counts from GET /metrics: a gateway serves it on
an internal listener of its own (GATEWAY_METRICS_PORT), never on its public port, so the
systems the benchmarks start give every gateway one and read it there."""

from __future__ import annotations

from pathlib import Path

from loadtests.system import metrics_url, with_metrics_port
from shared.testing.net import ServiceProcess


def test_a_gateway_is_read_on_its_own_metrics_listener(tmp_path: Path) -> None:
    first, second = with_metrics_port({}), with_metrics_port({})
    assert first["GATEWAY_METRICS_PORT"] != second["GATEWAY_METRICS_PORT"]
    gateway = ServiceProcess("gateway", "gateway.app:create_app", env=first, log_dir=tmp_path)
    assert metrics_url(gateway) == f"http://127.0.0.1:{first['GATEWAY_METRICS_PORT']}"
    assert metrics_url(gateway) != gateway.url


def test_an_app_is_read_on_its_own_port(tmp_path: Path) -> None:
    order = ServiceProcess("order", "order_service.app:create_app", env={}, log_dir=tmp_path)
    assert metrics_url(order) == order.url
