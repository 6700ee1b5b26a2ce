"""The test harness's ports and processes (shared/testing/net.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from shared.testing import net
from shared.testing.net import ServiceProcess, ThreadedServer, ephemeral_ports, free_port
from shared.testing.replica_app import create_app

APP = "shared.testing.replica_app:create_app"


def test_a_free_port_lies_below_the_range_outgoing_connections_take_ports_from() -> None:
    low, _ = ephemeral_ports()
    for _ in range(20):
        port = free_port()
        assert port < low
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


# Picks that would collide by chance: over the ~22,700 ports below the ephemeral range, a
# thousand random picks repeat one about twenty times.
PICKS = 1_000


def test_a_port_is_handed_out_once_whoever_asks(tmp_path: Path) -> None:
    """A port is picked, then bound only once its process has started, seconds later; one
    picked twice meanwhile went to two servers. Seen in a fresh-clone make test: a gateway's
    metrics port was in use by the time it bound it ("address already in use"). No two picks,
    in this process or another (pytest's other workers), may be the same port."""
    script = tmp_path / "picks.py"
    script.write_text("from shared.testing.net import free_port\n"
                      f"print(' '.join(str(free_port()) for _ in range({PICKS})))\n")
    other = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[2])
    here = [free_port() for _ in range(PICKS)]
    out, _ = other.communicate(timeout=60)
    there = [int(port) for port in out.split()]
    assert len(there) == PICKS
    assert len(set(here)) == PICKS
    assert len(set(there)) == PICKS
    assert set(here).isdisjoint(there)


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


def _answered_and_kept(port: int) -> socket.socket:
    """A connection that has had one whole answer (head and body, as the server may send them
    apart), then stays idle."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(4096)
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(4096)
    return sock


def test_the_test_servers_keep_an_idle_connection_longer_than_the_test_clients_do(
        tmp_path: Path) -> None:
    """The test clients (httpx) keep an idle connection for 5 s, as long as uvicorn keeps it by
    default: a request written as the server closes it is lost ("Server disconnected without
    sending a response"), seen in CI on a ticket read after a 300-order burst. Production's own
    client, the gateway, lets go first; in tests the servers must."""
    expiry = httpx.Limits().keepalive_expiry
    assert expiry is not None
    threaded = ThreadedServer(create_app()).start()
    process = ServiceProcess("kept", APP, env={}, log_dir=tmp_path).start()
    try:
        process.wait_healthy()
        sockets = [_answered_and_kept(threaded.port), _answered_and_kept(process.port)]
        time.sleep(expiry + 0.5)
        for sock in sockets:
            sock.settimeout(0.2)
            with pytest.raises(TimeoutError):  # nothing to read, and not closed (b"")
                sock.recv(1)
            sock.close()
    finally:
        process.stop()
        threaded.stop()


def test_a_descriptor_closed_while_it_is_read_does_not_hide_what_a_process_listens_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A process starting up opens and closes files all the time: one closed between the
    listing of its descriptors and their reading was taken for "cannot tell", and a process
    that had not bound the port passed for healthy on another's answer (a flaky
    test_a_process_whose_port_another_holds_is_not_taken_for_healthy)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        readlink = os.readlink
        first = True

        def vanishing(path: str) -> str:
            nonlocal first
            if first:
                first = False
                raise FileNotFoundError(path)
            return readlink(path)

        monkeypatch.setattr(os, "readlink", vanishing)
        assert net.listens_on(os.getpid(), port) is True
        first = True
        assert net.listens_on(os.getpid(), free_port()) is False
