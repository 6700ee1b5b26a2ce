"""The stack `make swarm-check` deploys, built from docker-compose.yml (the check itself needs an
engine and runs outside the test suite)."""

from __future__ import annotations

from deploy.swarm_check.stack import REPLICAS, StackImages, StackPorts, resolve, stack_file

IMAGES = StackImages(app="app:x", mysql="mysql:x", redis="redis:x")
PORTS = StackPorts(gateway=18000, mysql=13306, redis=16379)
OVERRIDES = {"IDENTITY_PUBLIC_KEYS": "{}", "ORDER_IDENTITY_PRIVATE_KEY": "k" * 43,
             "USER_JWT_PRIVATE_KEY": "pem",
             "ORDER_PAYMENT_TTL_SECONDS": "20", "MYSQL_ROOT_PASSWORD": "root-pw"}


def test_compose_defaults_resolve_unless_overridden() -> None:
    assert resolve("${A:-one}/${B:-two}", {"B": "2"}) == "one/2"
    assert resolve("${C}", {}) == ""


def test_the_sale_path_runs_twice_behind_round_robin_names() -> None:
    services = stack_file(IMAGES, PORTS, OVERRIDES)["services"]
    assert {name: s["deploy"]["replicas"] for name, s in services.items()} == REPLICAS
    for name in ("product-service", "order-service", "payment-service", "stock-service"):
        assert services[name]["deploy"]["replicas"] == 2
    assert services["gateway"]["deploy"]["replicas"] == 1
    assert all(s["deploy"]["endpoint_mode"] == "dnsrr" for s in services.values())


def test_only_the_gateway_and_mysql_publish_and_on_the_node_itself() -> None:
    services = stack_file(IMAGES, PORTS, OVERRIDES)["services"]
    published = {name: s["ports"] for name, s in services.items() if "ports" in s}
    assert published == {
        "gateway": [{"target": 8000, "published": 18000, "protocol": "tcp", "mode": "host"}],
        "mysql": [{"target": 3306, "published": 13306, "protocol": "tcp", "mode": "host"}],
        "redis": [{"target": 6379, "published": 16379, "protocol": "tcp", "mode": "host"}]}


def test_apps_run_the_built_image_with_the_runs_keys_and_timings() -> None:
    services = stack_file(IMAGES, PORTS, OVERRIDES)["services"]
    order = services["order-service"]
    assert order["image"] == "app:x"
    assert order["command"] == ["order_service", "8003"]
    assert order["environment"]["ORDER_PAYMENT_TTL_SECONDS"] == "20"
    assert order["environment"]["IDENTITY_PUBLIC_KEYS"] == "{}"
    assert order["environment"]["ORDER_IDENTITY_PRIVATE_KEY"] == "k" * 43
    assert "ORDER_IDENTITY_PRIVATE_KEY" not in services["stock-service"]["environment"]
    assert order["environment"]["ORDER_STOCK_SERVICE_URL"] == "http://stock-service:8005"
    assert services["user-service"]["environment"]["USER_JWT_PRIVATE_KEY"] == "pem"
    # Unset pass-through variables stay unset (compose passes nothing for them either).
    assert "SMTP_USERNAME" not in services["user-service"]["environment"]
    assert services["mysql"]["environment"]["MYSQL_ROOT_PASSWORD"] == "root-pw"
    assert services["mysql"]["image"] == "mysql:x"
    assert "devonly-redis-pw" in services["redis"]["command"]
