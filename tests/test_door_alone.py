"""The door (nginx, as rendered for the native runner) on its own:
- with LiteLLM absent, what a client reads when the control plane is down or a header is too big (a closed port
  stands for a LiteLLM that died);
- with a key check and a router that are small HTTP servers answering as gateway/auth.py and SMG do, what nginx
  does with the check's answer: a rate refusal, and a user's key named to the router, which no client can forge;
  and what it does with a router that stays silent: a stream sent again, a whole answer left to finish."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from conftest import free_ports

from llmfleet.render import door as render_door
from llmfleet.run.native.configs import door_workers_user

ROOT = Path(__file__).resolve().parents[1]
STREAM_FIRST_BYTE_S = 1  # the door's wait for a silent stream in these tests

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def start_door(tmp_path: Path, litellm: int, router: int) -> tuple[str, subprocess.Popen[bytes]]:
    """nginx with the native runner's door config, in front of these ports; its URL once it listens."""
    if not Path(NGINX).is_file():
        pytest.skip("nginx is not installed (make setup installs it)")
    (listen,) = free_ports(1)
    user = door_workers_user(tmp_path)  # as the native runner starts it: as root, its workers are another user
    for name in render_door.STATE_FOLDERS:
        (tmp_path / name).mkdir()
        if user:
            shutil.chown(tmp_path / name, *user.split())
    shutil.copyfile(ROOT / render_door.SCRIPT, tmp_path / render_door.SCRIPT.name)
    door = render_door.Door(
        f"127.0.0.1:{listen}", f"127.0.0.1:{litellm}", f"127.0.0.1:{router}", str(tmp_path), max_body_mb=1,
        script=str(tmp_path / render_door.SCRIPT.name), stream_first_byte_s=STREAM_FIRST_BYTE_S, user=user,
    )  # fmt: skip
    (tmp_path / "nginx.conf").write_text(render_door.nginx_conf(door, "# test\n"))
    nginx = subprocess.Popen([NGINX, "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    url = f"http://127.0.0.1:{listen}"
    deadline = time.monotonic() + 10
    while True:
        try:
            httpx.get(url + "/door/health", timeout=1)
            return url, nginx
        except httpx.TransportError:
            if nginx.poll() is not None or time.monotonic() > deadline:
                nginx.kill()
                pytest.fail(f"nginx did not listen within 10 s: {nginx.stderr.read().decode() if nginx.stderr else ''}")
            time.sleep(0.1)


@pytest.fixture
def door_without_litellm(tmp_path: Path) -> Iterator[str]:
    (closed,) = free_ports(1)  # nothing listens on `closed`: a LiteLLM (and a router) that is down
    url, nginx = start_door(tmp_path, closed, closed)
    try:
        yield url
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)


def test_a_key_check_that_cannot_reach_litellm_is_a_503_saying_retry(door_without_litellm: str) -> None:
    response = httpx.get(door_without_litellm + "/v1/models", headers={"Authorization": "Bearer sk-any"}, timeout=10)
    assert response.status_code == 503, response.text  # never a 500: the client should retry, not report a bug
    error = response.json()["error"]
    assert error["code"] == 503 and error["type"] == "service_unavailable"
    assert "Retry" in error["message"] and "llmfleet status" in error["message"]


def test_a_header_over_16_kib_is_a_431_naming_the_limit(door_without_litellm: str) -> None:
    response = httpx.get(door_without_litellm + "/v1/models", headers={"X-Big": "a" * 20_000}, timeout=10)
    assert response.status_code == 431, response.text
    assert "16 KiB" in response.json()["error"]["message"]


def test_no_key_is_a_401_even_with_litellm_down(door_without_litellm: str) -> None:
    response = httpx.post(door_without_litellm + "/v1/chat/completions", json={}, timeout=10)
    assert response.status_code == 401, response.text
    assert "LITELLM_MASTER_KEY" in response.json()["error"]["message"]


# --- the router lane's per-key answers, with the key check and the router stood in for -----------------------------
BACKENDS_KEY = "Bearer backends-key"
CHECKS = {  # the key check's answers, as gateway/auth.py door_check gives them
    "Bearer limited": (403, {"x-fleet-refusal": "429", "x-fleet-retry-after": "17", "X-Accel-Expires": "0",
                             "x-fleet-message": "The key 'limited' sent 3 requests this minute; its limit is 2."}),
    "Bearer user": (200, {"x-fleet-lane": "router", "x-fleet-backend-auth": BACKENDS_KEY,
                          "x-fleet-key": "llmfleet-key=user;models=m"}),
    "Bearer master": (200, {"x-fleet-lane": "router", "x-fleet-backend-auth": BACKENDS_KEY}),
}  # fmt: skip


class Recorder(BaseHTTPRequestHandler):
    """The key check at /fleet/door-check (answers from CHECKS), the router anywhere else: it echoes the headers,
    after staying silent for `silent_s` seconds on each of the first `silent` requests (a hung backend), or answers
    `status` with SMG's own body."""

    seen: list[dict[str, str]]
    posts: list[dict[str, object]]

    def do_GET(self) -> None:
        self.seen.append(dict(self.headers))
        status, headers = CHECKS.get(self.headers.get("authorization", ""), (401, {}))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        self.posts.append(request)
        if len(self.posts) <= request.get("silent", 0):
            time.sleep(request["silent_s"])
        status = request.get("status", 200)
        body = json.dumps(dict(self.headers) if status == 200 else SMG_ERROR).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # a silent answer the door gave up on

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def door_with_router(tmp_path: Path) -> Iterator[tuple[str, list[dict[str, str]]]]:
    handler = type("Handler", (Recorder,), {"seen": [], "posts": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url, nginx = start_door(tmp_path, server.server_port, server.server_port)
    try:
        yield url, handler.seen, handler.posts
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        server.shutdown()
        server.server_close()


# SMG's 503 with every backend out of rotation, as it words it.
SMG_ERROR = {"error": {"type": "server_error", "code": "no_available_workers", "param": None,
                       "message": "All workers are unavailable (circuit breaker open or unhealthy)"}}  # fmt: skip


def complete(url: str, key: str, body: dict[str, object] | None = None, **headers: str) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json={"model": "m", **(body or {})}, timeout=10,
                      headers={"Authorization": key, **headers})  # fmt: skip


def test_a_key_over_its_limit_is_a_429_with_retry_after_in_the_openai_shape(door_with_router: tuple) -> None:
    url, seen, _ = door_with_router
    response = complete(url, "Bearer limited")
    assert response.status_code == 429, response.text
    assert response.headers["retry-after"] == "17"
    error = response.json()["error"]
    assert error == {"message": CHECKS["Bearer limited"][1]["x-fleet-message"], "type": "rate_limit_error",
                     "param": None, "code": 429}  # fmt: skip
    assert seen[-1]["X-Fleet-Completion"] == "1"  # the check knew it was a completion, which rpm counts
    assert [s for s in seen if "X-Fleet-Completion" not in s] == []  # the router never saw it


def test_the_router_gets_the_users_key_by_name_and_never_a_clients_own(door_with_router: tuple) -> None:
    url, _, _ = door_with_router
    forged = {"X-Correlation-Id": "llmfleet-key=someone-else;models="}
    answer = complete(url, "Bearer user", **forged)
    assert answer.status_code == 200, answer.text
    assert answer.json()["X-Correlation-Id"] == "llmfleet-key=user;models=m"
    assert answer.json()["Authorization"] == BACKENDS_KEY  # the backends' key, never the client's
    master = complete(url, "Bearer master", **forged)
    assert master.status_code == 200 and "X-Correlation-Id" not in master.json()


def test_a_refusal_without_a_rate_limit_stays_a_403(door_with_router: tuple) -> None:
    url, _, _ = door_with_router
    CHECKS["Bearer refused"] = (403, {})
    try:
        response = complete(url, "Bearer refused")
    finally:
        del CHECKS["Bearer refused"]
    assert response.status_code == 403 and response.json()["error"]["type"] == "permission_error"


def test_a_stream_its_backend_never_opens_is_sent_again_after_the_first_byte_timeout(door_with_router: tuple) -> None:
    url, _, posts = door_with_router
    start = time.monotonic()
    answer = complete(url, "Bearer master", {"stream": True, "silent": 1, "silent_s": 4})
    took = time.monotonic() - start
    assert answer.status_code == 200, answer.text
    assert len(posts) == 2 and posts[0] == posts[1]  # the same body, sent again
    assert STREAM_FIRST_BYTE_S <= took < STREAM_FIRST_BYTE_S + 1.5, took


def test_a_whole_answer_slower_than_the_stream_timeout_is_left_to_finish(door_with_router: tuple) -> None:
    url, _, posts = door_with_router
    answer = complete(url, "Bearer master", {"silent": 1, "silent_s": STREAM_FIRST_BYTE_S + 1.5})
    assert answer.status_code == 200, answer.text
    assert len(posts) == 1  # never sent twice: a whole answer says nothing until it is done


def test_a_stream_silent_on_every_try_is_a_503_naming_no_backend(door_with_router: tuple) -> None:
    url, _, posts = door_with_router
    answer = complete(url, "Bearer master", {"stream": True, "silent": 9, "silent_s": 4})
    assert answer.status_code == 503, answer.text
    assert len(posts) == render_door.STREAM_TRIES
    error = answer.json()["error"]
    assert error["type"] == "service_unavailable" and "No backend of this model answered" in error["message"]


def test_the_routers_own_503_is_answered_in_the_doors_words(door_with_router: tuple) -> None:
    url, _, _ = door_with_router
    answer = complete(url, "Bearer master", {"status": 503})
    assert answer.status_code == 503, answer.text
    assert "llmfleet status" in answer.json()["error"]["message"]  # what to do, not SMG's "circuit breaker"
