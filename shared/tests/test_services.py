"""The registry lists exactly the service packages in the repository, each in the shared shape."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from shared.services import GATEWAY, SERVICES, App, service

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_every_service_package_is_registered() -> None:
    packages = {path.parent.name for path in REPO_ROOT.glob("*_service/app.py")}
    assert packages == {app.package for app in SERVICES}


def test_names_and_ports_are_unique() -> None:
    apps = (GATEWAY, *SERVICES)
    assert len({app.name for app in apps}) == len(apps)
    assert len({app.port for app in apps}) == len(apps)


@pytest.mark.parametrize("app", SERVICES, ids=lambda app: app.name)
def test_each_service_has_the_shared_shape(app: App) -> None:
    settings = importlib.import_module(f"{app.package}.settings")
    assert settings.Settings.model_config["env_prefix"] == f"{app.env_prefix}_"
    assert settings.Settings(environment="test").database_url.endswith(f"/{app.schema}")
    assert callable(importlib.import_module(f"{app.package}.app").create_app)
    assert (REPO_ROOT / app.package / "migrations" / "env.py").is_file()


def test_lookup_by_short_name_or_package() -> None:
    assert service("stock") is service("stock_service")
    with pytest.raises(KeyError):
        service("billing")


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_running_code_never_imports_deployment_tooling() -> None:
    """What runs in production (gateway, services, shared) does without deploy/: the image holds
    the code, and the deployment tooling may change without touching a service."""
    packages = ["shared", GATEWAY.package, *(app.package for app in SERVICES)]
    offenders = [
        f"{path.relative_to(REPO_ROOT)} imports {module}"
        for package in packages
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
        if "tests" not in path.relative_to(REPO_ROOT).parts
        for module in _imported_modules(path)
        if module == "deploy" or module.startswith("deploy.")
    ]
    assert offenders == []


def test_no_tests_import_another_apps_tests() -> None:
    """What tests share lives in shared/testing; one service's tests reaching into another's
    would tie the two suites together."""
    packages = [GATEWAY.package, *(app.package for app in SERVICES)]
    offenders = [
        f"{path.relative_to(REPO_ROOT)} imports {module}"
        for package in packages
        for path in sorted((REPO_ROOT / package / "tests").rglob("*.py"))
        for module in _imported_modules(path)
        for other in packages
        if other != package and (module == f"{other}.tests" or module.startswith(f"{other}.tests."))
    ]
    assert offenders == []


def test_transactions_are_opened_by_one_of_the_two_named_patterns() -> None:
    """STYLE: a simple route commits once in its session dependency (shared.db.session_scope);
    a multi-step flow opens its transactions through shared.db.Transactions. Nobody spells
    `session.begin()` again, so a reader sees from the imports which of the two a module uses."""
    packages = ["shared", GATEWAY.package, *(app.package for app in SERVICES)]
    offenders = [
        f"{path.relative_to(REPO_ROOT)}:{number}"
        for package in packages
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
        if "tests" not in path.relative_to(REPO_ROOT).parts and "migrations" not in path.parts
        # db.py defines the two; migrate.py runs Alembic on a connection, not a session.
        and path not in (REPO_ROOT / "shared" / "db.py", REPO_ROOT / "shared" / "migrate.py")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if ".begin()" in line
    ]
    assert offenders == []
