"""The vLLM servers' own wall (vllm/backend_guard.py) as the ASGI middleware vLLM loads, in front of a small ASGI
app that records what reaches it. The stack tests (test_door.py) prove the same inside real vLLM servers."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from typing import Any

import pytest
import yaml
from bad_input import BAD
from conftest import ROOT

spec = importlib.util.spec_from_file_location("backend_guard", ROOT / "vllm" / "backend_guard.py")
assert spec and spec.loader
backend_guard = importlib.util.module_from_spec(spec)
spec.loader.exec_module(backend_guard)

KEY = "backend-key"


class App:
    """Answers 200 with the body it read; remembers each request."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes]] = []

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        body = b""
        if scope["type"] == "http":
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
        self.seen.append((scope.get("path", scope["type"]), body))
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})


def call(path: str, body: bytes = b"", key: str | None = KEY, method: str = "POST", chunks: int = 1,
         **env: str) -> tuple[int, dict, App, int]:  # fmt: skip
    """(status, JSON answer or {}, the app, how many body messages the guard read)."""
    app = App()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLLM_API_KEY", KEY)
        for name, value in {"LLMFLEET_MAX_N": "4", "LLMFLEET_MAX_TOKENS": "2048", **env}.items():
            mp.setenv(name, value)
        guard = backend_guard.BackendGuard(app)
    headers = [(b"authorization", f"Bearer {key}".encode())] if key else []
    scope = {"type": "http", "method": method, "path": path, "headers": headers}
    size = -(-len(body) // chunks) or 1  # as a client sends a body: in pieces, one after the other
    parts = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)]
    read = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal read
        read += 1
        return messages[read - 1] if read <= len(messages) else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(guard(scope, receive, send))
    status = sent[0]["status"]
    answer = sent[1]["body"]
    return status, (json.loads(answer) if status != 200 else {}), app, read


@pytest.mark.parametrize("path", ["/invocations", "/tokenize", "/pooling", "/version", "/v2/models", "/"])
def test_paths_outside_v1_health_and_metrics_are_refused_with_or_without_the_key(path: str) -> None:
    for key in (KEY, None):
        status, answer, app, _ = call(path, b'{"prompt": "hi"}', key=key)
        assert status == 404 and path in answer["error"]["message"] and app.seen == []


@pytest.mark.parametrize("path", ["/health", "/metrics", "/v1/models", "/v1/embeddings"])
def test_health_metrics_and_v1_pass_to_vllm(path: str) -> None:
    status, _, app, _ = call(path, method="GET", key=None)
    assert status == 200 and app.seen == [(path, b"")]


def test_a_completion_without_the_key_is_refused_before_its_body_is_read() -> None:
    status, answer, app, read = call("/v1/chat/completions", b"x" * 1000, key="wrong")
    assert (status, read, app.seen) == (401, 0, [])
    assert answer["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(("field", "value"), [("n", 1000), ("best_of", 5), ("max_tokens", 4096),
                                              ("max_completion_tokens", 10**9)])  # fmt: skip
def test_a_request_over_the_plans_caps_gets_a_400_naming_the_field(field: str, value: int) -> None:
    body = json.dumps({"model": "m", "prompt": "hi", field: value}).encode()
    status, answer, app, _ = call("/v1/completions", body)
    assert status == 400 and app.seen == []
    assert answer["error"]["param"] == field and f"{field} is {value}" in answer["error"]["message"]


def test_a_request_within_the_caps_reaches_vllm_with_its_body_whole() -> None:
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 4, "max_tokens": 2048})
    status, _, app, _ = call("/v1/chat/completions", body.encode(), chunks=3)
    assert status == 200 and app.seen == [("/v1/chat/completions", body.encode())]


def test_a_body_over_the_limit_gets_413() -> None:
    status, answer, app, _ = call("/v1/completions", b"x" * 2_000_000, chunks=4, LLMFLEET_MAX_BODY_MB="1")
    assert status == 413 and app.seen == [] and "1 MiB" in answer["error"]["message"]


@pytest.fixture
def vllms_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fields vLLM's request models have, as a server reads them (gateway/params.yaml is rendered from them and
    checked against the pinned vLLM by test_gateway_params.py); this venv has no vLLM to read them from."""
    params = yaml.safe_load((ROOT / "gateway" / "params.yaml").read_text(encoding="utf-8"))
    monkeypatch.setattr(backend_guard, "vllm_fields", lambda: {k: frozenset(v) for k, v in params.items()})


CHECKED_HERE = [b for b in BAD if b[4] in ("guard", "caps")]


@pytest.mark.parametrize(("what", "body", "status", "words", "who"), CHECKED_HERE, ids=[b[0] for b in CHECKED_HERE])
@pytest.mark.usefixtures("vllms_fields")
def test_bad_input_gets_the_gateways_4xx_from_the_backend_itself(what: str, body: bytes | dict, status: int,
                                                                   words: list[str], who: str) -> None:  # fmt: skip
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    got, answer, app, _ = call("/v1/chat/completions", content)
    assert (got, app.seen) == (status, [])
    for word in words:
        assert word in answer["error"]["message"], f"{what}: {answer} lacks {word!r}"


@pytest.mark.usefixtures("vllms_fields")
def test_each_field_check_names_the_field_and_vllms_own_extensions_pass() -> None:
    for body, param in (({"model": "m", "prompt": "hi", "frobnicate": 1}, "frobnicate"),
                        ({"model": "m", "prompt": "hi", "n": "2"}, "n"),
                        ({"model": "m", "prompt": "hi", "stream": "yes"}, "stream")):  # fmt: skip
        status, answer, app, _ = call("/v1/completions", json.dumps(body).encode())
        assert (status, answer["error"]["param"], app.seen) == (400, param, [])
    extensions = {"model": "m", "prompt": "hi", "ignore_eos": True, "top_k": 5, "min_p": 0.1, "seed": 7}
    assert call("/v1/completions", json.dumps(extensions).encode())[0] == 200


def test_without_vllms_request_models_unknown_fields_are_left_to_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend_guard, "vllm_fields", dict)  # a vLLM that keeps its request models elsewhere
    body = json.dumps({"model": "m", "prompt": "hi", "frobnicate": 1}).encode()
    status, _, app, _ = call("/v1/completions", body)
    assert status == 200 and app.seen == [("/v1/completions", body)]
