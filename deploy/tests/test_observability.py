"""deploy/observability/ against the code: every metric the Grafana dashboard and the alert rules
query exists in the registry (shared/sale_metrics.py, shared/metrics.py), so neither can silently
break when a metric is renamed; Prometheus scrapes every app where compose runs it; Grafana's
provisioning finds the dashboard and its data source; docs/metrics.md names every metric."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric

from deploy.tests.test_compose import compose_service_name
from shared.metrics import RequestMetrics
from shared.sale_metrics import every_sale_metric
from shared.services import GATEWAY, SERVICES

REPO_ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = REPO_ROOT / "deploy" / "observability"
DASHBOARD = OBSERVABILITY / "grafana" / "dashboards" / "preorder-sale.json"
COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{([^{}]*)\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_WORD = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
# Prometheus's own series for every target.
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def metric_names(expression: str) -> set[str]:
    """The series names a PromQL expression reads (functions, keywords, label matchers,
    groupings and ranges left out)."""
    text = _MATCHERS.sub("", _STRING.sub('""', expression))
    text = _RANGE.sub("", _GROUPING.sub("", text))
    names = set()
    for match in _WORD.finditer(text):
        if text[match.end():].lstrip().startswith("(") or match[0] in _KEYWORDS:
            continue
        names.add(match[0])
    return names


def _series_of(family: Metric) -> set[str]:
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"],
                "gauge": [""], "summary": ["_count", "_sum", ""]}[family.type]
    return {family.name + suffix for suffix in suffixes}


def exposed_series() -> set[str]:
    registry = CollectorRegistry()
    for collector in every_sale_metric():
        registry.register(collector)
    request = RequestMetrics("any")
    return {name for source in (registry, request.registry) for family in source.collect()
            for name in _series_of(family)} | PROMETHEUS_OWN


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"]
            for target in panel.get("targets", [])]


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_metric_names_are_read_out_of_promql() -> None:
    assert metric_names(
        'histogram_quantile(0.99, sum by (le, operation) '
        '(rate(preorder_processor_request_seconds_bucket{outcome="x"}[1m])))'
    ) == {"preorder_processor_request_seconds_bucket"}
    assert metric_names("(a_total + b) != on (product) c > 0") == {"a_total", "b", "c"}
    # A name the registry lacks is seen as missing: the checks below can fail.
    assert "preorder_no_such_metric_total" not in exposed_series()
    assert metric_names("sum(rate(preorder_no_such_metric_total[5m]))") == {
        "preorder_no_such_metric_total"}


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_every_metric_queried_exists_in_the_registry(source: str) -> None:
    expressions = (dashboard_expressions() if source == "dashboard"
                   else [rule["expr"] for rule in alert_rules()])
    assert expressions
    queried = set().union(*(metric_names(e) for e in expressions))
    assert queried
    assert queried - exposed_series() == set()


def test_loops_the_alerts_name_are_loops_the_code_runs() -> None:
    named = set()
    for rule in alert_rules():
        for matchers in _MATCHERS.findall(rule["expr"]):
            for value in re.findall(r'loop=~?"([^"]*)"', matchers):
                named |= set(value.split("|"))
    assert named
    code = "\n".join(path.read_text() for package in ("order_service", "stock_service",
                                                      "payment_service")
                     for path in (REPO_ROOT / package).rglob("tasks.py"))
    running = set(re.findall(r'loop="([a-z_]+)"', code))
    assert named - running == set()


def test_jobs_the_dashboard_names_are_scrape_jobs() -> None:
    jobs = {job["job_name"] for job in
            yaml.safe_load((OBSERVABILITY / "prometheus.yml").read_text())["scrape_configs"]}
    named = set()
    for expression in [*dashboard_expressions(), *(r["expr"] for r in alert_rules())]:
        named |= set(re.findall(r'job="([^"]*)"', expression))
    assert named - jobs == set()


def test_prometheus_scrapes_every_app_where_compose_runs_it() -> None:
    config = yaml.safe_load((OBSERVABILITY / "prometheus.yml").read_text())
    targets = {job["job_name"]: [t for group in job["static_configs"] for t in group["targets"]]
               for job in config["scrape_configs"]}
    gateway_port = re.search(r"GATEWAY_METRICS_PORT:-(\d+)", (
        REPO_ROOT / "docker-compose.yml").read_text())
    assert gateway_port is not None
    expected = {GATEWAY.name: [f"gateway:{gateway_port[1]}"],
                **{app.name: [f"{compose_service_name(app.package)}:{app.port}"]
                   for app in SERVICES}}
    assert targets == expected
    for target in [t for group in targets.values() for t in group]:
        assert target.split(":")[0] in COMPOSE["services"]
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]


def test_the_observability_profile_mounts_what_is_in_the_repository() -> None:
    services = COMPOSE["services"]
    profiled = {name for name, service in services.items() if service.get("profiles")}
    assert profiled == {"prometheus", "grafana"}
    for name in profiled:
        assert services[name]["profiles"] == ["observability"]
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO_ROOT / source).exists(), volume
    mounts = dict(v.split(":")[:2] for v in services["prometheus"]["volumes"])
    assert mounts["./deploy/observability/alerts.yml"] == "/etc/prometheus/alerts.yml"


def test_grafana_provisions_the_dashboard_with_its_data_source() -> None:
    provisioning = OBSERVABILITY / "grafana" / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    uids = {source["uid"] for source in sources["datasources"]}
    providers = yaml.safe_load((provisioning / "dashboards" / "preorder.yml").read_text())
    paths = {provider["options"]["path"] for provider in providers["providers"]}
    mounts = dict(v.split(":")[:2] for v in COMPOSE["services"]["grafana"]["volumes"])
    assert mounts["./deploy/observability/grafana/dashboards"] in paths
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] in uids
        assert all(target["datasource"]["uid"] in uids for target in panel["targets"])


def test_docs_name_every_sale_metric() -> None:
    documented = (REPO_ROOT / "docs" / "metrics.md").read_text()
    registry = CollectorRegistry()
    for collector in every_sale_metric():
        registry.register(collector)
    missing = {series for family in registry.collect() for series in _series_of(family)
               if not series.endswith(("_bucket", "_sum")) and f"`{series}`" not in documented
               and f"`{series.removesuffix('_count')}`" not in documented}
    assert missing == set()


def test_every_alert_is_explained_in_operations_md() -> None:
    operations = (REPO_ROOT / "docs" / "operations.md").read_text()
    missing = [rule["alert"] for rule in alert_rules() if f"`{rule['alert']}`" not in operations]
    assert missing == []
