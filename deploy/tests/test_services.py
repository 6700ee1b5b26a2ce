"""The registry lists exactly the service packages in the repository, each in the shared shape."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from deploy.services import GATEWAY, SERVICES, App, service

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
