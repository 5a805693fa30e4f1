"""`llmfleet restart` (and the drills' bring-back) on the native runner, when another program took the stopped
server's port meanwhile: the local end of an outgoing connection can take any port of the kernel's ephemeral range."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import free_port

from llmfleet.errors import FleetError
from llmfleet.run import procs
from llmfleet.run.native import lifecycle
from llmfleet.run.native.ports import port_is_free
from llmfleet.run.state import Started, State
from llmfleet.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SERVE = "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(60)"


def a_fleet_of_one_stopped_server(tmp_path: Path, port: int) -> Settings:
    settings = Settings(LLMFLEET_RUN_DIR=str(tmp_path / "run"))
    settings.run_dir.mkdir(parents=True)
    ended = subprocess.Popen(["true"], start_new_session=True)
    started = procs.start_time(ended.pid) or 1
    ended.wait()
    server = Started(
        "vllm-cpu0", pid=ended.pid, started=started, port=port, health_url=f"http://127.0.0.1:{port}/health",
        log=str(tmp_path / "vllm-cpu0.log"), argv=[sys.executable, "-c", SERVE.format(port=port)],
    )  # fmt: skip
    State(str(ROOT), "cpu", ["fleet-tiny"], [server]).save(settings.run_dir)
    return settings


class OutgoingConnection:
    """A connection whose local end is `port`, as the kernel may give an outgoing connection."""

    def __init__(self, port: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.client = socket.socket()
        self.client.bind(("127.0.0.1", port))
        self.client.connect(self.listener.getsockname())
        self.server_end, _ = self.listener.accept()

    def close(self) -> None:
        """The far end closes first, as a server that times out an idle keep-alive does: the port is left free."""
        for s in (self.server_end, self.client, self.listener):
            s.close()


def listens_within(port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
        time.sleep(0.1)
    return False


def test_a_restart_waits_for_a_port_an_outgoing_connection_holds_and_then_starts(tmp_path: Path) -> None:
    port = free_port()
    settings = a_fleet_of_one_stopped_server(tmp_path, port)
    connection = OutgoingConnection(port)
    assert not port_is_free(port)
    closing = threading.Timer(1.0, connection.close)  # it ends, as an idle keep-alive connection does
    closing.start()
    try:
        [server] = lifecycle.restart(settings, ["vllm-cpu0"])
        try:
            assert server.port == port
            assert listens_within(port, 10), (tmp_path / "vllm-cpu0.log").read_text()
        finally:
            procs.stop_groups([(server.pid, server.started)], timeout=5)
    finally:
        closing.join()


def test_a_restart_whose_port_stays_taken_says_which_port_and_how_to_free_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lifecycle, "PORT_FREED_WITHIN_S", 1.0)
    port = free_port()
    settings = a_fleet_of_one_stopped_server(tmp_path, port)
    connection = OutgoingConnection(port)
    try:
        with pytest.raises(FleetError) as refused:
            lifecycle.restart(settings, ["vllm-cpu0"])
    finally:
        connection.close()
    assert f"port {port}" in str(refused.value) and "ss -tanp" in str(refused.value)
    assert not Path(tmp_path / "vllm-cpu0.log").exists()  # nothing was started to fail on it
