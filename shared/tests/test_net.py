"""The test harness's ports and processes (shared/testing/net.py)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from shared.testing.net import ServiceProcess, ephemeral_ports, free_port

APP = "shared.testing.replica_app:create_app"


def test_a_free_port_lies_below_the_range_outgoing_connections_take_ports_from() -> None:
    low, _ = ephemeral_ports()
    for _ in range(20):
        port = free_port()
        assert port < low
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_process_whose_port_another_holds_is_not_taken_for_healthy(tmp_path: Path) -> None:
    """Seen in a 20,000-buyer make load: a gateway replica could not bind its port, another
    process's answer on it passed for the replica's health check, and a third of the buyers
    talked to the wrong server. The check now fails with the replica's own log."""
    holder = ServiceProcess("holder", APP, env={}, log_dir=tmp_path).start()
    late = ServiceProcess("late", APP, env={}, port=holder.port, log_dir=tmp_path)
    try:
        holder.wait_healthy()
        late.start()
        with pytest.raises(RuntimeError, match="late exited"):
            late.wait_healthy(timeout=60)
    finally:
        late.stop()
        holder.stop()
