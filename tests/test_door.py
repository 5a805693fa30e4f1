"""The front door (nginx) and the backends' own wall, against the real stack: nothing reaches Python or a backend
unchecked. The door's config is src/llmfleet/render/door.py; the backends' guard is vllm/backend_guard.py."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import psutil
import pytest
from bad_input import BAD, HI, MODEL
from conftest import Stack

pytestmark = pytest.mark.stack

GIB = 2**30


def zeros(total: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    """A body sent chunked (no Content-Length), as a client that never says how much it will send."""
    block = b"0" * chunk
    for _ in range(total // chunk):
        yield block


def tree_rss(pid: int) -> int:
    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in (process, *process.children(recursive=True)))


def service_pid(stack: Stack, name: str) -> int:
    return next(s["pid"] for s in stack.services() if s["name"] == name)


def assert_openai_error(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == status and error["type"] and error["message"]
    for word in words:
        assert word in error["message"], f"{error['message']!r} lacks {word!r}"
    assert not re.search(r"127\.0\.0\.1:\d+|nginx", response.text)


def test_a_1_gib_chunked_body_without_a_key_is_refused_before_it_is_read(stack: Stack) -> None:
    door, litellm = service_pid(stack, "door"), service_pid(stack, "gateway")
    before = tree_rss(door), tree_rss(litellm)
    try:
        response = httpx.post(stack.gateway + "/v1/chat/completions", content=zeros(GIB), timeout=60)
        status = response.status_code
    except httpx.TransportError:
        status = None  # the door may close the connection once it has answered, while the client still sends
    grown = [(tree_rss(door) - before[0]) / 2**20, (tree_rss(litellm) - before[1]) / 2**20]
    print(f"1 GiB chunked, no key: HTTP {status}; door grew {grown[0]:.1f} MiB, LiteLLM {grown[1]:.1f} MiB")
    assert status in (401, None)
    assert grown[0] < 10 and grown[1] < 10


def test_a_chunked_body_over_the_limit_with_a_key_gets_413(stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {stack.key}", "Content-Type": "application/json"}
    try:
        response = httpx.post(
            stack.gateway + "/v1/chat/completions", content=zeros(64 << 20), headers=headers, timeout=60
        )
    except httpx.TransportError as e:  # pragma: no cover - the answer is read before the upload ends on loopback
        pytest.fail(f"the door closed the connection without its 413: {e}")
    assert_openai_error(response, 413, "at most 4 MiB", "GATEWAY_MAX_BODY_MB")


@pytest.mark.parametrize(
    ("method", "route", "status", "words"),
    [
        ("POST", "/v1/embeddings", 404, ["/v1/chat/completions", "/v1/models"]),
        ("POST", "/v1/responses", 404, ["/v1/chat/completions"]),
        ("POST", "/v1/messages", 404, ["/v1/chat/completions"]),
        ("POST", "/vllm/v1/chat/completions", 404, ["/v1/chat/completions"]),  # LiteLLM's pass-through
        ("GET", "/v1/chat/completions", 405, ["POST"]),
        ("DELETE", "/v1/models", 405, ["GET"]),
    ],
)
def test_routes_the_guard_does_not_check_never_pass_the_door(
    stack: Stack, method: str, route: str, status: int, words: list[str]
) -> None:
    body = {"model": MODEL, "messages": HI, "input": "hi"} if method == "POST" else None
    response = httpx.request(method, stack.gateway + route, json=body, timeout=30,
                             headers={"Authorization": f"Bearer {stack.key}"})  # fmt: skip
    assert_openai_error(response, status, *words)


def test_errors_of_the_door_say_how_to_send_a_key(stack: Stack) -> None:
    for headers in ({}, {"Authorization": "Bearer sk-not-the-key"}):
        response = httpx.post(stack.gateway + "/v1/chat/completions", json={"model": MODEL, "messages": HI},
                              headers=headers, timeout=30)  # fmt: skip
        assert_openai_error(response, 401, "Authorization: Bearer")
        # An unknown route says nothing, not even that it is unknown, to a client without a valid key.
        assert_openai_error(httpx.get(stack.gateway + "/no-such-route", headers=headers, timeout=30), 401)
    known = httpx.get(stack.gateway + "/no-such-route", headers={"Authorization": f"Bearer {stack.key}"}, timeout=30)
    assert_openai_error(known, 404, "/v1/chat/completions")


def test_one_request_cannot_ask_for_more_than_its_share_of_a_server(stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {stack.key}"}
    for field in ("n", "best_of"):
        body = {"model": MODEL, "prompt": "hi", "max_tokens": 2, field: 1000}
        response = httpx.post(stack.gateway + "/v1/completions", json=body, headers=headers, timeout=30)
        assert response.status_code == 400, response.text
        assert field in response.json()["error"]["message"]  # the cap (n), or the guard's unknown field (best_of)
    allowed = {"model": MODEL, "messages": HI, "max_tokens": 2, "n": 2}
    response = httpx.post(stack.gateway + "/v1/chat/completions", json=allowed, headers=headers, timeout=30)
    assert response.status_code == 200 and len(response.json()["choices"]) == 2


STRAIGHT = [b for b in BAD if b[4] != "gateway"]  # what only a gateway knows: the model groups


@pytest.mark.parametrize(("what", "body", "status", "words", "who"), STRAIGHT, ids=[b[0] for b in STRAIGHT])
def test_bad_input_sent_straight_to_a_backend_gets_the_gateways_4xx(
    stack: Stack, what: str, body: bytes | dict, status: int, words: list[str], who: str
) -> None:
    """A router in front of the backends (not LiteLLM) passes requests as they come: the backends' own guard must
    answer bad input as the gateway does. `who` says which check answers (tests/bad_input.py)."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {stack.cli.secrets['VLLM_API_KEY']}", "Content-Type": "application/json"}
    response = httpx.post(stack.backend("vllm-cpu0") + "/v1/chat/completions", content=content, headers=headers,
                          timeout=60)  # fmt: skip
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    for word in words:
        assert word in message, f"{what} ({who}): {message!r} lacks {word!r}"


@pytest.mark.parametrize("path", ["/invocations", "/tokenize", "/detokenize", "/pooling", "/classify", "/score",
                                  "/version", "/load"])  # fmt: skip
def test_a_backend_refuses_every_path_outside_v1_health_and_metrics(stack: Stack, path: str) -> None:
    body = {"model": MODEL, "prompt": "hi", "max_tokens": 2, "messages": HI}
    for name in ("vllm-cpu0", "vllm-cpu1"):
        backend = stack.backend(name)
        response = httpx.post(backend + path, json=body, timeout=30)
        assert_openai_error(response, 404, path)
        with_key = httpx.post(backend + path, json=body, timeout=30,
                              headers={"Authorization": f"Bearer {stack.cli.secrets['VLLM_API_KEY']}"})  # fmt: skip
        assert with_key.status_code == 404


def test_a_backend_answers_health_and_metrics_and_refuses_completions_without_its_key(stack: Stack) -> None:
    backend = stack.backend("vllm-cpu0")
    assert httpx.get(backend + "/health", timeout=10).status_code == 200
    assert "vllm:num_requests_running" in httpx.get(backend + "/metrics", timeout=30).text
    for route in ("/v1/chat/completions", "/v1/completions"):
        response = httpx.post(backend + route, content=zeros(64 << 20), timeout=30)  # refused before it is read
        assert_openai_error(response, 401, "through the gateway")
