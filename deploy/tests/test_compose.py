"""docker-compose.yml, init.sql and the Dockerfile agree with what the services read.

These read the files and the services' own settings classes; `make compose-check` runs them on a
real engine (deploy/compose_check/), which the test suite does not need.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices, AliasPath
from pydantic_settings import BaseSettings
from sqlalchemy.engine import make_url

from shared.redis_acl import ACCESS, acl_rules, redis_username
from shared.services import SIGNERS

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DEVELOPMENT_ENV = REPO_ROOT / "deploy" / "development.env"
INIT_SQL = REPO_ROOT / "deploy" / "mysql" / "init.sql"
DOCKERFILE = REPO_ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"

APPS = ("gateway", "user_service", "product_service", "order_service", "payment_service",
        "stock_service", "social_service")
DATABASE_SERVICES = {
    "user_service": ("USER_", "preorder_user"),
    "product_service": ("PRODUCT_", "preorder_product"),
    "order_service": ("ORDER_", "preorder_order"),
    "payment_service": ("PAYMENT_", "preorder_payment"),
    "stock_service": ("STOCK_", "preorder_stock"),
    "social_service": ("SOCIAL_", "preorder_social"),
}
# The variables the deployment contract names for each app: docker-compose.yml sets every one.
CONTRACT_VARIABLES: dict[str, set[str]] = {
    "gateway": {
        "GATEWAY_REDIS_URL", "GATEWAY_USER_SERVICE_URL", "GATEWAY_PRODUCT_SERVICE_URL",
        "GATEWAY_ORDER_SERVICE_URL", "GATEWAY_PAYMENT_SERVICE_URL", "GATEWAY_STOCK_SERVICE_URL",
        "GATEWAY_SOCIAL_SERVICE_URL", "GATEWAY_JWT_ISSUER", "GATEWAY_JWT_AUDIENCE",
        "GATEWAY_CONNECT_TIMEOUT_SECONDS", "GATEWAY_UPSTREAM_TIMEOUT_SECONDS",
        "GATEWAY_MAX_BODY_BYTES", "GATEWAY_CORS_ORIGINS", "GATEWAY_TRUSTED_PROXY_NETWORKS",
    },
    "user_service": {
        "USER_JWT_PRIVATE_KEY", "USER_JWT_PREVIOUS_PUBLIC_KEYS", "USER_JWT_KEY_DIR",
        "USER_JWT_ISSUER", "USER_JWT_AUDIENCE", "USER_ACCESS_TOKEN_TTL_SECONDS",
        "USER_REFRESH_TOKEN_TTL_SECONDS", "USER_VERIFICATION_CODE_TTL_SECONDS",
        "USER_VERIFICATION_MAX_ATTEMPTS", "USER_RESEND_INTERVAL_SECONDS",
        "USER_LOGIN_MAX_FAILURES_PER_EMAIL", "USER_LOGIN_MAX_FAILURES_PER_IP",
        "USER_LOGIN_FAILURE_WINDOW_SECONDS", "USER_PASSWORD_HASH_WORKERS",
        "SMTP_HOST", "SMTP_PORT", "SMTP_USERNAME", "SMTP_PASSWORD", "SMTP_STARTTLS", "MAIL_FROM",
        "SMTP_TIMEOUT_SECONDS",
    },
    "order_service": {"ORDER_PAYMENT_TTL_SECONDS"},
    "payment_service": {"PAYMENT_FAILURE_RATE"},
}
for _package, (_prefix, _schema) in DATABASE_SERVICES.items():
    CONTRACT_VARIABLES.setdefault(_package, set()).update(
        f"{_prefix}{name}" for name in ("DATABASE_URL", "DATABASE_POOL_SIZE", "REDIS_URL"))
for _variables in CONTRACT_VARIABLES.values():
    _variables.update({"APP_ENV", "LOG_LEVEL", "IDENTITY_PUBLIC_KEYS"})
for _app in SIGNERS:
    CONTRACT_VARIABLES.setdefault(_app.package, set()).add(f"{_app.env_prefix}_IDENTITY_PRIVATE_KEY")

# The innermost `${...}` (its argument holds no other): nested defaults resolve inside out.
_SUBSTITUTION = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}$]*))?\}")


def compose_service_name(package: str) -> str:
    return package.replace("_", "-")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return document


def environment_of(compose: dict[str, Any], package: str) -> dict[str, str]:
    service = compose["services"][compose_service_name(package)]
    environment = service.get("environment", {})
    if isinstance(environment, list):  # the `- NAME=value` form
        environment = dict(item.split("=", 1) for item in environment)
    return {str(k): "" if v is None else str(v) for k, v in environment.items()}


def development_env() -> dict[str, str]:
    """deploy/development.env: the development override's variables."""
    pairs = (line.split("=", 1) for line in DEVELOPMENT_ENV.read_text().splitlines()
             if line.strip() and not line.startswith("#"))
    return {name: value for name, value in pairs}


def resolve_default(value: str, env: dict[str, str] | None = None) -> str:
    """`${VAR:-default}` as compose resolves it with the variables of `env` (the development
    override by default) and nothing else set; `${VAR:?msg}` without VAR stays as is."""
    env = development_env() if env is None else env

    def substitute(match: re.Match[str]) -> str:
        if match["name"] in env:
            return env[match["name"]]
        # `${VAR:?msg}` is kept, with its `$` escaped so the loop does not find it again.
        return match["arg"] if match["op"] in (":-", "-") else "\0" + match[0][1:]
    while (resolved := _SUBSTITUTION.sub(substitute, value)) != value:
        value = resolved
    return value.replace("\0", "$")


def settings_environment_names(settings_class: type[BaseSettings]) -> list[set[str]]:
    """For each field, the environment variable names any one of which sets it."""
    config = settings_class.model_config
    prefix = str(config.get("env_prefix", ""))
    names: list[set[str]] = []
    for field_name, field in settings_class.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            choices = {c for c in alias.choices if isinstance(c, str)}
            choices |= {str(c.path[0]) for c in alias.choices if isinstance(c, AliasPath)}
        elif isinstance(alias, AliasPath):
            choices = {str(alias.path[0])}
        elif isinstance(alias, str):
            choices = {alias}
        elif field.alias:
            choices = {field.alias}
        else:
            choices = {f"{prefix}{field_name}"}
        names.append({choice.upper() for choice in choices})
    return names


def import_settings_class(package: str) -> type[BaseSettings]:
    try:
        module = importlib.import_module(f"{package}.settings")
    except ImportError as error:
        pytest.fail(f"{package}.settings cannot be imported ({error}); the compose check needs "
                    f"{package}.settings.Settings to see which variables {package} reads")
    settings_class = getattr(module, "Settings", None)
    if not (isinstance(settings_class, type) and issubclass(settings_class, BaseSettings)):
        pytest.fail(f"{package}.settings has no pydantic-settings class named Settings")
    return settings_class


def test_every_app_is_a_compose_service(compose: dict[str, Any]) -> None:
    missing = [p for p in APPS if compose_service_name(p) not in compose["services"]]
    assert not missing, f"apps missing from docker-compose.yml: {missing}"
    for package in APPS:
        command = compose["services"][compose_service_name(package)]["command"]
        assert command[0] == package, f"{package} runs {command}"


def test_only_the_gateway_publishes_a_port(compose: dict[str, Any]) -> None:
    publishing = {name: [resolve_default(p) for p in s["ports"]]
                  for name, s in compose["services"].items()
                  if s.get("ports") and not s.get("profiles")}
    assert publishing == {"gateway": ["8000:8000"]}
    # The observability profile's Grafana, on loopback only; Prometheus not at all.
    profiled = {name: [resolve_default(p) for p in s.get("ports", [])]
                for name, s in compose["services"].items() if s.get("profiles")}
    assert profiled == {"prometheus": [], "grafana": ["127.0.0.1:3000:3000"]}


def test_docker_compose_1_can_read_the_file(compose: dict[str, Any]) -> None:
    # docker-compose 1.29 (Debian's) rejects a top-level `name`; the project is named by -p.
    assert set(compose) <= {"services", "volumes", "networks", "secrets", "configs"} | {
        key for key in compose if key.startswith("x-")}


SECRETS = {f"{app.env_prefix}_IDENTITY_PRIVATE_KEY" for app in SIGNERS} | {
    f"{app.upper()}_REDIS_PASSWORD" for app in ACCESS} | {
    "MYSQL_ROOT_PASSWORD", "REDIS_PASSWORD", "PROCESSOR_WEBHOOK_SECRET",
    "PAYMENT_IDEMPOTENCY_FINGERPRINT_KEY"} | {
    f"{prefix}{name}" for prefix in ("GATEWAY_", "USER_", "PRODUCT_", "ORDER_", "PAYMENT_",
                                     "STOCK_", "SOCIAL_")
    for name in ("REDIS_URL", "DATABASE_URL", "MIGRATION_DATABASE_URL")
} - {"GATEWAY_DATABASE_URL", "GATEWAY_MIGRATION_DATABASE_URL"}


def test_every_secret_must_be_given_and_the_development_override_gives_them() -> None:
    """Production by default: compose refuses to start without each secret (no public default
    key or password to forget), and deploy/development.env sets every one of them."""
    text = "\n".join(line for line in COMPOSE_FILE.read_text().splitlines()
                     if not line.lstrip().startswith("#"))
    required = set(re.findall(r"\$\{(\w+):\?", text))
    assert required == SECRETS | {"IDENTITY_PUBLIC_KEYS"}  # public, but without it nothing runs
    defaulted = set(re.findall(r"\$\{(\w+):-", text))
    assert not defaulted & SECRETS, f"secrets with a default: {defaulted & SECRETS}"
    assert "devonly-" not in text
    development = development_env()
    assert development.keys() >= SECRETS | {"IDENTITY_PUBLIC_KEYS"}
    assert development["APP_ENV"] == "development"
    assert all(development[name].count("devonly-") == 1 for name in SECRETS)


def test_user_service_replicas_share_the_generated_signing_key(compose: dict[str, Any]) -> None:
    """Outside production, the key user_service generates must be the same for every replica
    and outlive a container, so its directory is a named volume."""
    environment = environment_of(compose, "user_service")
    assert environment["USER_JWT_PRIVATE_KEY"] == "", "passed through from .env only when set"
    key_dir = resolve_default(environment["USER_JWT_KEY_DIR"])
    mounts = dict(v.split(":")[:2][::-1] for v in
                  compose["services"][compose_service_name("user_service")]["volumes"])
    assert key_dir in mounts, f"{key_dir} is not a volume of user-service"
    assert mounts[key_dir] in compose["volumes"], "a named volume, not a host path"
    assert f"install -d -o app -g app -m 0700 /app/.data {key_dir}" in DOCKERFILE.read_text(), (
        "the image makes the directory the app user's, which a new volume copies")


def test_every_app_has_a_healthcheck_and_waits_for_what_it_needs(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for package in APPS:
        service = services[compose_service_name(package)]
        assert "/healthz" in " ".join(service["healthcheck"]["test"]), package
        depends_on = service["depends_on"]
        assert isinstance(depends_on, dict), f"{package}: depends_on needs conditions"
        assert depends_on["redis"]["condition"] == "service_healthy", package
        if package in DATABASE_SERVICES:
            assert depends_on["mysql"]["condition"] == "service_healthy", package
    gateway_needs = services["gateway"]["depends_on"]
    for package in DATABASE_SERVICES:
        assert gateway_needs[compose_service_name(package)]["condition"] == "service_healthy"


def test_datastores_mailpit_and_init_sql_are_wired(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["mysql"]["image"].startswith("mysql:8")
    assert any("init.sql:/docker-entrypoint-initdb.d/" in v for v in services["mysql"]["volumes"])
    assert services["redis"]["image"].startswith("redis:7")
    assert "--appendonly" in services["redis"]["command"]
    assert services["mailpit"]["image"].startswith("axllent/mailpit")
    user_env = environment_of(compose, "user_service")
    assert resolve_default(user_env["SMTP_HOST"]) == "mailpit"
    assert resolve_default(user_env["SMTP_PORT"]) == "1025"


@pytest.mark.parametrize("package", APPS)
def test_every_variable_the_settings_read_is_set(compose: dict[str, Any], package: str) -> None:
    environment = environment_of(compose, package)
    settings_class = import_settings_class(package)
    names = settings_environment_names(settings_class)
    # An app that signs nothing (no internal calls) is given no identity private key.
    unused = [] if package in {app.package for app in SIGNERS} else [
        n for n in names if any(name.endswith("_IDENTITY_PRIVATE_KEY") for name in n)]
    unset = [sorted(n) for n in names if n not in unused and not n & environment.keys()]
    assert not unset, f"{package} reads these but docker-compose.yml does not set them: {unset}"


@pytest.mark.parametrize("package", APPS)
def test_every_contract_variable_is_set(compose: dict[str, Any], package: str) -> None:
    missing = CONTRACT_VARIABLES[package] - environment_of(compose, package).keys()
    assert not missing, f"docker-compose.yml does not set {sorted(missing)} for {package}"


def test_no_default_nests_another_variable() -> None:
    # docker-compose v1 (the one `make compose-check` runs) leaves `${A:-${B}}` half resolved.
    assert not re.findall(r"\$\{\w+:?-[^}]*\$\{", COMPOSE_FILE.read_text())


def test_redis_requires_a_password_and_every_app_uses_it(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = [resolve_default(part) for part in redis["command"]]
    password = command[command.index("--requirepass") + 1]
    assert password
    assert resolve_default(redis["environment"]["REDISCLI_AUTH"]) == password  # healthcheck
    development = development_env()
    for package in APPS:
        (url,) = [resolve_default(value) for name, value in environment_of(compose, package).items()
                  if name.endswith("_REDIS_URL")]
        app = package.removesuffix("_service")
        own = development[f"{app.upper()}_REDIS_PASSWORD"]
        assert own != password
        assert url == f"redis://{redis_username(app)}:{own}@redis:6379/0", package


@pytest.mark.parametrize("package", APPS)
def test_compose_runs_production_unless_the_development_override_says_otherwise(
    compose: dict[str, Any], package: str
) -> None:
    app_env = environment_of(compose, package)["APP_ENV"]
    assert resolve_default(app_env, env={}) == "production"
    assert resolve_default(app_env) == "development"


@pytest.mark.parametrize("package", APPS)
def test_app_containers_run_with_least_privilege(compose: dict[str, Any], package: str) -> None:
    service = compose["services"][compose_service_name(package)]
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert service["read_only"] is True
    assert service["tmpfs"] == ["/tmp"]  # noqa: S108 (a private tmpfs, not a shared /tmp)


def parse_grants(sql: str) -> dict[str, set[str]]:
    """user -> the schemas it is granted anything on."""
    grants: dict[str, set[str]] = {}
    pattern = re.compile(r"^\s*GRANT\s+.+?\s+ON\s+(?P<target>\S+)\s+TO\s+'(?P<user>[^']+)'",
                         re.IGNORECASE | re.MULTILINE)
    for match in pattern.finditer(sql):
        schema = match["target"].split(".")[0].strip("`")
        grants.setdefault(match["user"], set()).add(schema)
    return grants


def test_each_database_service_has_its_own_user_granted_only_its_schema(
    compose: dict[str, Any],
) -> None:
    sql = INIT_SQL.read_text()
    grants = parse_grants(sql)
    assert "*" not in {s for schemas in grants.values() for s in schemas}, "no global grants"
    users: dict[str, str] = {}
    for package, (prefix, schema) in DATABASE_SERVICES.items():
        assert f"CREATE DATABASE IF NOT EXISTS `{schema}`" in sql
        url = make_url(resolve_default(environment_of(compose, package)[f"{prefix}DATABASE_URL"]))
        assert url.database == schema, f"{package} uses schema {url.database}"
        assert url.host == "mysql"
        assert url.username not in (None, "root"), f"{package} connects as {url.username}"
        assert url.password, f"{package} connects without a password"
        assert grants.get(str(url.username)) == {schema}, (
            f"{package}'s user {url.username} is granted {grants.get(str(url.username))}, "
            f"not only {schema}")
        assert f"'{url.username}'@'%' IDENTIFIED BY '{url.password}'" in sql
        users[package] = str(url.username)
    assert len(set(users.values())) == len(users), f"services share a MySQL user: {users}"


def _stages(dockerfile: str) -> list[str]:
    return re.split(r"^FROM\s", dockerfile, flags=re.MULTILINE)[1:]


def test_the_image_does_not_run_as_root() -> None:
    final = _stages(DOCKERFILE.read_text())[-1]
    users = re.findall(r"^\s*USER\s+(\S+)", final, re.MULTILINE)
    assert users, "the Dockerfile never leaves root"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_the_image_is_an_exact_python_312_slim_unless_told_otherwise() -> None:
    dockerfile = DOCKERFILE.read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.12\.\d+-slim-bookworm$", dockerfile, re.MULTILINE)
    assert all(stage.startswith("${PYTHON_IMAGE}") for stage in _stages(dockerfile))


def test_the_final_stage_takes_nothing_of_the_build_context_but_the_entrypoint() -> None:
    dockerfile = DOCKERFILE.read_text()
    final = _stages(dockerfile)[-1]
    copies = re.findall(r"^COPY\s+(.+)$", final, re.MULTILINE)
    assert copies == ["--from=build /opt/venv /opt/venv",
                      "deploy/entrypoint.sh /app/deploy/entrypoint.sh"]
    # The CA bundle a build may be given reaches the build stage only, and no BuildKit-only
    # syntax (docker-compose 1.x builds with the legacy builder).
    assert ".pip-ca.pem" not in final
    assert "--mount" not in dockerfile
    assert not re.search(r"^#\s*syntax=", dockerfile, re.MULTILINE)


def test_tests_and_tools_stay_out_of_the_build_context() -> None:
    ignored = set(DOCKERIGNORE.read_text().split())
    assert {"**/tests", "loadtests", "deploy/compose_check", ".env", ".git", ".venv"} <= ignored
    assert "deploy/entrypoint.sh" not in ignored


def test_payment_service_charges_through_the_processor_simulator(compose: dict[str, Any]) -> None:
    from payment_service.simulator.settings import SimulatorSettings

    services = compose["services"]
    simulator = services["processor-sim"]
    assert simulator["command"] == ["payment_service.simulator", "8007"]
    assert "8007/healthz" in " ".join(simulator["healthcheck"]["test"])
    assert not simulator.get("ports")
    environment = {str(k): "" if v is None else str(v)
                   for k, v in simulator["environment"].items()}
    unset = [sorted(n) for n in settings_environment_names(SimulatorSettings)
             if not n & environment.keys()]
    assert not unset, f"the simulator reads these but docker-compose.yml does not set them: {unset}"
    payment = environment_of(compose, "payment_service")
    assert resolve_default(payment["PAYMENT_PROCESSOR_URL"]) == "http://processor-sim:8007"
    assert resolve_default(environment["PROCESSOR_SIM_WEBHOOK_URL"]) == (
        "http://payment-service:8004/webhooks/processor")
    assert resolve_default(environment["PROCESSOR_SIM_WEBHOOK_SECRET"]) == resolve_default(
        payment["PAYMENT_PROCESSOR_WEBHOOK_SECRET"])
    assert services["payment-service"]["depends_on"]["processor-sim"]["condition"] == (
        "service_healthy")


def test_runtime_users_cannot_change_the_schema_and_migration_users_can(
    compose: dict[str, Any],
) -> None:
    """A service that is compromised can read and write its rows, not drop or alter its tables:
    only the migration user (used at start-up by deploy/migrate.py) holds DDL."""
    sql = INIT_SQL.read_text()
    pattern = re.compile(r"^\s*GRANT\s+(?P<privileges>.+?)\s+ON\s+`(?P<schema>\w+)`\.\*\s+TO\s+"
                         r"'(?P<user>[^']+)'", re.IGNORECASE | re.MULTILINE)
    granted = {(m["user"], m["schema"]): {p.strip().upper() for p in m["privileges"].split(",")}
               for m in pattern.finditer(sql)}
    for package, (prefix, schema) in DATABASE_SERVICES.items():
        environment = environment_of(compose, package)
        runtime = make_url(resolve_default(environment[f"{prefix}DATABASE_URL"]))
        migration = make_url(resolve_default(environment[f"{prefix}MIGRATION_DATABASE_URL"]))
        assert runtime.username != migration.username, package
        assert (runtime.database, migration.database) == (schema, schema), package
        assert granted[(str(runtime.username), schema)] == {"SELECT", "INSERT", "UPDATE",
                                                            "DELETE"}, package
        assert {"CREATE", "ALTER", "DROP"} <= granted[(str(migration.username), schema)], package


@pytest.mark.parametrize("compose_file", ["docker-compose.yml", "deploy/compose.deps.yml"])
def test_every_pulled_image_is_pinned_to_an_exact_release(compose_file: str) -> None:
    services = yaml.safe_load((REPO_ROOT / compose_file).read_text())["services"]
    pulled = {name: s["image"] for name, s in services.items() if "build" not in s}
    assert pulled
    # A moving tag (redis:7, latest, none) changes under a rebuild; x.y.z does not.
    loose = {name: image for name, image in pulled.items()
             if not re.search(r":v?\d+\.\d+\.\d+$", image)}
    assert loose == {}


def test_redis_has_each_apps_own_user_as_shared_redis_acl_says(compose: dict[str, Any]) -> None:
    """One user per app, limited to its keys, channels and commands (the tests run the apps as
    these users); each app's URL names its own, and the development passwords are its own."""
    command = compose["services"]["redis"]["command"]
    users = {}
    for index, part in enumerate(command):
        if part == "--user":
            end = next((i for i in range(index + 1, len(command))
                        if command[i].startswith("--")), len(command))
            users[command[index + 1]] = command[index + 2:end]
    assert set(users) == {redis_username(app) for app in ACCESS}
    development = development_env()
    for app in ACCESS:
        variable = f"{app.upper()}_REDIS_PASSWORD"
        assert users[redis_username(app)] == [
            "on", f">${{{variable}:?set {variable}, see deploy/development.env}}",
            *acl_rules(app, "${PUBSUB_PREFIX:-preorder:}")]
        url = make_url(development[f"{app.upper()}_REDIS_URL"].replace("redis://", "redis+x://"))
        assert (url.username, url.password) == (redis_username(app), development[variable])
