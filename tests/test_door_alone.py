"""The door (nginx, as rendered for the native runner) on its own, with LiteLLM absent: what a client reads when
the control plane is down or a header is too big. No stack: a closed port stands for a LiteLLM that died."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import free_ports

from llmfleet.render import door as render_door

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


@pytest.fixture
def door_without_litellm(tmp_path: Path) -> Iterator[str]:
    if not Path(NGINX).is_file():
        pytest.skip("nginx is not installed (make setup installs it)")
    listen, closed = free_ports(2)  # nothing listens on `closed`: a LiteLLM (and a router) that is down
    for name in render_door.STATE_FOLDERS:
        (tmp_path / name).mkdir()
    door = render_door.Door(
        f"127.0.0.1:{listen}", f"127.0.0.1:{closed}", f"127.0.0.1:{closed}", str(tmp_path), max_body_mb=1
    )
    (tmp_path / "nginx.conf").write_text(render_door.nginx_conf(door, "# test\n"))
    nginx = subprocess.Popen([NGINX, "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    url = f"http://127.0.0.1:{listen}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(url + "/door/health", timeout=1)
                break
            except httpx.TransportError:
                assert nginx.poll() is None, nginx.stderr.read().decode() if nginx.stderr else ""
                assert time.monotonic() < deadline, "nginx did not listen within 10 s"
                time.sleep(0.1)
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
