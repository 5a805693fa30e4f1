"""The vLLM servers' own wall (vllm/backend_guard.py) as the ASGI middleware vLLM loads, in front of a small ASGI
app that records what reaches it. The stack tests (test_door.py) prove the same inside real vLLM servers."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
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


# --- a user's key on the router lane: the door names it in x-correlation-id (render/door.py) -------------------------
USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


def vllm_answer(stream: bool, usage_asked: bool) -> list[dict]:
    """The messages vLLM sends for a chat completion, streamed or not, with its usage where it was asked for."""
    if not stream:
        body = json.dumps({"choices": [{"message": {"content": "hi"}}], "usage": USAGE}).encode()
        return [{"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]},
                {"type": "http.response.body", "body": body}]  # fmt: skip
    events = [
        b'data: {"choices":[{"delta":{"content":"h"}}]}\n\n',
        b'data: {"choices":[{"delta":{"content":"i"}}]}\n\n',
    ]
    if usage_asked:
        events.append(b'data: {"choices":[],"usage":' + json.dumps(USAGE).encode() + b"}\n\n")
    events.append(b"data: [DONE]\n\n")
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
    return [start, *({"type": "http.response.body", "body": e, "more_body": True} for e in events)]


def call_as_user(request: dict, key_header: bytes) -> tuple[list[dict], dict]:
    """(what the client got, the request vLLM read), for a request the door sent with this key header."""
    seen: dict = {}

    async def app(scope: dict, receive: Any, send: Any) -> None:
        seen.update(json.loads((await receive())["body"]))
        options = seen.get("stream_options") or {}
        for message in vllm_answer(seen.get("stream") is True, options.get("include_usage") is True):
            await send(message)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLLM_API_KEY", KEY)
        mp.delenv("LLMFLEET_USAGE_URL", raising=False)
        guard = backend_guard.BackendGuard(app)
    headers = [(b"authorization", f"Bearer {KEY}".encode()), (b"x-correlation-id", key_header)]
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": headers}
    body = json.dumps(request).encode()
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(guard(scope, receive, send))
    return sent, seen


def counted(key: str, kind: str | None = None) -> float:
    from prometheus_client import REGISTRY

    name, labels = (
        ("llmfleet_key_requests_total", {}) if kind is None else ("llmfleet_key_tokens_total", {"kind": kind})
    )
    return REGISTRY.get_sample_value(name, {"key": key, "model": "m", **labels}) or 0.0


def test_a_users_key_may_not_use_a_model_outside_its_list() -> None:
    request = {"model": "other", "messages": [{"role": "user", "content": "hi"}]}
    sent, seen = call_as_user(request, b"llmfleet-key=laptop;models=m,n")
    answer = json.loads(sent[1]["body"])
    assert sent[0]["status"] == 403 and seen == {}
    assert answer["error"]["message"] == "The key 'laptop' may not use the model 'other'; it may use m, n."


@pytest.mark.parametrize("stream", [False, True])
def test_a_users_answer_is_counted_from_vllms_own_usage(stream: bool) -> None:
    key = f"counted-{stream}".lower()
    before = counted(key), counted(key, "prompt"), counted(key, "completion")
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    sent, _ = call_as_user(request, f"llmfleet-key={key};models=".encode())
    assert sent[0]["status"] == 200
    after = counted(key), counted(key, "prompt"), counted(key, "completion")
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 7, 3]


def test_a_stream_gets_the_usage_chunk_only_when_its_client_asked_for_it() -> None:
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    sent, seen = call_as_user(request, b"llmfleet-key=quiet;models=")
    assert seen["stream_options"] == {"include_usage": True}  # vLLM was asked, so the key is charged its tokens
    streamed = b"".join(m.get("body", b"") for m in sent[1:])
    assert b'"usage"' not in streamed and streamed.endswith(b"data: [DONE]\n\n") and b'"content":"i"' in streamed
    sent, _ = call_as_user({**request, "stream_options": {"include_usage": True}}, b"llmfleet-key=asked;models=")
    assert b'"usage":{' in b"".join(m.get("body", b"") for m in sent[1:])


def test_the_master_keys_requests_are_passed_as_they_came() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    sent, seen = call_as_user(body, b"some-client-trace-id")  # no llmfleet-key=: not a user's key
    assert seen == body and sent[0]["status"] == 200


def test_a_streams_headers_wait_for_its_first_chunk() -> None:
    """A hung engine under a live API server sends a stream's headers and then nothing: held back, they leave the
    door's first-byte timeout a silence to see (render/door.py)."""
    order: list[str] = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        order.append("vllm: headers sent, waiting on the engine")
        await send({"type": "http.response.body", "body": b"data: {}\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLLM_API_KEY", KEY)
        guard = backend_guard.BackendGuard(app)

    async def send(message: dict) -> None:
        order.append(message["type"] + (f" {message['body']!r}" if "body" in message else ""))

    for stream in (True, False):
        order.clear()
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream}).encode()
        scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
                 "headers": [(b"authorization", f"Bearer {KEY}".encode())]}  # fmt: skip

        async def receive(body: bytes = body) -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        asyncio.run(guard(scope, receive, send))
        if stream:
            assert order == ["vllm: headers sent, waiting on the engine", "http.response.start",
                             "http.response.body b'data: {}\\n\\n'", "http.response.body b''"]  # fmt: skip
        else:  # a whole answer is passed as it comes
            assert order[:2] == ["http.response.start", "http.response.body b''"]


def test_a_streams_headers_go_at_once_when_another_answer_shows_the_engine_alive() -> None:
    """A stream queued behind live work is not silent for long: the door would take a queue for a hang."""
    order: list[str] = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await asyncio.sleep(0.1)
        backend_guard.Progress.mark()  # another answer's chunk
        await asyncio.sleep(3 * backend_guard.ENGINE_CHECK_S)
        order.append("vllm: first token")
        await send({"type": "http.response.body", "body": b"data: {}\n\n", "more_body": False})

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLLM_API_KEY", KEY)
        guard = backend_guard.BackendGuard(app)
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
             "headers": [(b"authorization", f"Bearer {KEY}".encode())]}  # fmt: skip

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        order.append(message["type"])

    asyncio.run(guard(scope, receive, send))
    assert order == ["http.response.start", "vllm: first token", "http.response.body"]


def test_a_stream_left_waiting_by_a_hung_engine_fails_health_until_any_answer_sends_a_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """vLLM's own /health says 200 while its API process runs, however long its engine hangs: the router would
    send the door's next try of a silent stream to the same server. The guard answers 503 for it instead."""
    monkeypatch.setattr(backend_guard.Progress, "last", 0.0)
    monkeypatch.setattr(backend_guard.Progress, "waited_since", None)
    engine = asyncio.Event()  # set: the engine sends the stream's first token

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["path"] == "/health":  # vLLM's own: its API process answers
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await engine.wait()
        await send({"type": "http.response.body", "body": b"data: {}\n\n", "more_body": False})

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLLM_API_KEY", KEY)
        mp.setenv("LLMFLEET_ENGINE_HUNG_S", "0.5")
        guard = backend_guard.BackendGuard(app)
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()

    async def ask(path: str) -> tuple[int, bytes]:
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET" if path == "/health" else "POST", "path": path,
                 "headers": [(b"authorization", f"Bearer {KEY}".encode())]}  # fmt: skip
        await guard(scope, receive, send)
        return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])

    async def main() -> tuple[list[int], str]:
        seen = [(await ask("/health"))[0]]
        stream = asyncio.ensure_future(ask("/v1/chat/completions"))
        await asyncio.sleep(0.2)
        seen.append((await ask("/health"))[0])  # waiting, but not yet for long
        await asyncio.sleep(0.8)
        status, answer = await ask("/health")
        seen.append(status)
        engine.set()  # its first token: the engine is alive after all
        assert (await stream)[0] == 200
        seen.append((await ask("/health"))[0])
        return seen, json.loads(answer)["error"]["message"]

    seen, message = asyncio.run(main())
    assert seen == [200, 200, 503, 200]
    assert "no token" in message and "out of rotation" in message


def test_a_stream_whose_engine_hangs_mid_answer_ends_with_an_error_event_and_the_server_fails_health(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The router keeps an open stream alive with its pings, so nothing outside the server can tell a hung engine from
    a slow one: the guard ends the stream as LiteLLM's lane does after its stream_timeout, with an error event."""
    monkeypatch.setattr(backend_guard.Progress, "last", 0.0)
    monkeypatch.setattr(backend_guard.Progress, "waited_since", None)
    cancelled = asyncio.Event()

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["path"] == "/health":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b'data: {"choices": []}\n\n', "more_body": True})
        try:
            await asyncio.sleep(60)  # the engine hangs
        except asyncio.CancelledError:
            cancelled.set()  # vLLM aborts the request
            raise

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLLM_API_KEY", KEY)
        mp.setenv("LLMFLEET_STREAM_STALL_S", "0.5")
        guard = backend_guard.BackendGuard(app)
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()

    async def ask(path: str) -> list[dict]:
        sent: list[dict] = []

        async def receive() -> dict:
            if sent:  # the client keeps reading: no disconnect while the answer lasts
                await asyncio.sleep(60)
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET" if path == "/health" else "POST", "path": path,
                 "headers": [(b"authorization", f"Bearer {KEY}".encode())]}  # fmt: skip
        await asyncio.wait_for(guard(scope, receive, send), timeout=10)
        return sent

    async def main() -> tuple[list[dict], bool, list[dict]]:
        stream = await ask("/v1/chat/completions")
        await asyncio.sleep(0.05)
        return stream, cancelled.is_set(), await ask("/health")

    started = time.monotonic()
    stream, aborted, health = asyncio.run(main())
    bodies = [m.get("body", b"") for m in stream[1:]]
    assert stream[0]["status"] == 200 and bodies[0] == b'data: {"choices": []}\n\n'  # the tokens before the hang
    event = json.loads(bodies[1].removeprefix(b"data: "))
    assert event["error"]["code"] == 504 and "no token" in event["error"]["message"]
    assert stream[-1] == {"type": "http.response.body", "body": b"", "more_body": False}  # ended, and no [DONE]
    assert not any(b"[DONE]" in b for b in bodies)
    assert aborted and time.monotonic() - started < 5
    assert health[0]["status"] == 503  # the router takes the server out until its engine sends a chunk again


def test_a_stream_of_the_synthetic_plan_that_pauses_past_its_first_token_wait_is_finished_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing sends a begun stream again, so the guard cuts one only after the device's first-token wait, not the
    synthetic model's 2 s: two engines busy on two shared cores went 2.3 s without a token (2026-12-04)."""
    from llmfleet.plan.schema import cpu_tiny_plan
    from llmfleet.plan.serving import first_token_timeout_s, guard_env

    plan = cpu_tiny_plan()
    server = plan.servers[0]
    pause = first_token_timeout_s(plan.device, server.model) + 0.5
    monkeypatch.setattr(backend_guard.Progress, "last", 0.0)
    monkeypatch.setattr(backend_guard.Progress, "waited_since", None)

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b'data: {"choices": []}\n\n', "more_body": True})
        await asyncio.sleep(pause)  # busy, not hung
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLLM_API_KEY", KEY)
        for name, value in guard_env(server, plan.device, "http://127.0.0.1:1").items():
            mp.setenv(name, value)
        guard = backend_guard.BackendGuard(app)
    body = json.dumps({"model": server.model, "messages": [{"role": "user", "content": "hi"}], "stream": True})
    sent: list[dict] = []

    async def receive() -> dict:
        if sent:  # the client keeps reading
            await asyncio.sleep(60)
        return {"type": "http.request", "body": body.encode(), "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(asyncio.wait_for(guard({"type": "http", "method": "POST", "path": "/v1/chat/completions",
                                        "headers": [(b"authorization", f"Bearer {KEY}".encode())]}, receive, send),
                                 timeout=pause + 5))  # fmt: skip
    bodies = b"".join(m.get("body", b"") for m in sent[1:])
    assert sent[0]["status"] == 200 and b"error" not in bodies and bodies.endswith(b"data: [DONE]\n\n")
