"""The gateway's settings name one upstream URL per service of the registry, and no other."""

from __future__ import annotations

import pytest

from gateway.settings import Settings
from shared.services import SERVICES


def test_one_url_setting_per_registered_service() -> None:
    fields = {name for name in Settings.model_fields if name.endswith("_service_url")}
    assert fields == {f"{app.name}_service_url" for app in SERVICES}


def test_upstreams_default_to_the_make_run_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    for app in SERVICES:
        monkeypatch.delenv(f"GATEWAY_{app.env_prefix}_SERVICE_URL", raising=False)
    assert Settings().upstreams() == {app.name: app.local_url for app in SERVICES}
