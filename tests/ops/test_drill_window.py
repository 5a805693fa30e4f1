"""The freeze drill's window, against a stand-in gateway on a local port: when every steady user is on a stream the
frozen server holds, a user who arrives after the strike still measures the fleet (it used to miss: no request
began in the window, so its p99 was none).

The stand-in sends every stream to the victim until it is frozen, and holds the victim's open streams until it is
thawed; once frozen, new requests go to the other server. That is what SMG does with a stopped process's streams."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llmfleet.ops import drill as drills

VICTIM, OTHER = "vllm-b", "vllm-a"
CHUNKS, CHUNK_S = 20, 0.03  # a 0.6 s stream: at the strike, every steady user is in the middle of one


class Fleet:
    """The two servers' state, as the drill's signals leave it; the drill acts on it as on its Backends."""

    def __init__(self) -> None:
        self.frozen = threading.Event()
        self.thawed = threading.Event()
        self.thawed.set()
        self.names = [OTHER, VICTIM]

    def signal(self, name: str, sig: signal.Signals) -> None:
        assert name == VICTIM
        if sig == signal.SIGSTOP:
            self.thawed.clear()
            self.frozen.set()
        elif sig == signal.SIGCONT:
            self.frozen.clear()
            self.thawed.set()


def handler_for(fleet: Fleet) -> type[BaseHTTPRequestHandler]:
    class Gateway(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # the body ends when the connection closes

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            backend = OTHER if fleet.frozen.is_set() else VICTIM
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("x-fleet-backend", backend)
            self.end_headers()
            for _ in range(CHUNKS):
                if backend == VICTIM:
                    fleet.thawed.wait()  # a stopped process sends nothing
                self.wfile.write(b'data: {"choices": [{"delta": {"content": "x"}}]}\n\n')
                self.wfile.flush()
                time.sleep(CHUNK_S)
            self.wfile.write(b"data: [DONE]\n\n")

        def log_message(self, *_: object) -> None:
            pass

    return Gateway


@pytest.fixture
def stand_in() -> Iterator[tuple[str, Fleet]]:
    fleet = Fleet()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(fleet))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", fleet
    finally:
        fleet.signal(VICTIM, signal.SIGCONT)
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_freeze_drill_measures_requests_in_its_window_when_the_frozen_server_holds_every_steady_user(
    stand_in: tuple[str, Fleet],
) -> None:
    url, fleet = stand_in
    drill = drills.Drill(url, "key", "fleet-tiny", fleet, users=4, window_s=3)  # type: ignore[arg-type]
    drill.under_load("freeze", VICTIM, signal.SIGSTOP, baseline=1.0)
    figures = {figure.name: figure for figure in drill.figures}
    assert figures["streams it had begun, held until it ran again"].value == 4
    assert isinstance(figures["requests in the window"].value, int) and figures["requests in the window"].value >= 3
    assert figures["p99 latency (s)"].met, figures["p99 latency (s)"]
    assert figures["failed before their first token"].value == 0
    assert figures[f"{VICTIM} serving again after (s)"].met
    assert figures["of them from a user who arrived after the strike"].value == figures["requests in the window"].value
