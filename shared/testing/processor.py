"""The card processor simulator as a process beside payment_service, for the systems tests and
load runs start: where payment_service finds it, and where it sends its webhooks."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from shared.services import PROCESSOR_SIM
from shared.testing.net import ServiceProcess, free_port

WEBHOOK_PATH = "/webhooks/processor"


def simulator_process(*, payment_url: str, log_dir: Path, port: int | None = None,
                      env: Mapping[str, str] | None = None) -> ServiceProcess:
    """Not started yet. `env`: PROCESSOR_SIM_* fault settings (and APP_ENV)."""
    return ServiceProcess(PROCESSOR_SIM.name, PROCESSOR_SIM.factory, log_dir=log_dir,
                          port=port or free_port(),
                          env={"APP_ENV": "test", "LOG_LEVEL": "INFO",
                               "PROCESSOR_SIM_WEBHOOK_URL": payment_url + WEBHOOK_PATH,
                               "PROCESSOR_SIM_WEBHOOK_RETRY_SECONDS": "0.2",
                               **(env or {})})


def payment_environment(simulator: ServiceProcess) -> dict[str, str]:
    """What payment_service needs to charge through the simulator."""
    return {"PAYMENT_PROCESSOR_URL": simulator.url}
