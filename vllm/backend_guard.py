"""The vLLM servers' own wall, loaded into each server with `--middleware backend_guard.BackendGuard`.

vLLM's `--api-key` guards only some path prefixes (/v1 among them): `/invocations` serves whole completions, and
`/tokenize` and `/pooling` answer, without a key. A backend is meant to answer the gateway only, so this refuses:
- every path outside /v1/, /health and /metrics (404), whoever asks;
- a completion request without the backends' key (401), before its body is read;
- a body larger than LLMFLEET_MAX_BODY_MB (413), and a request that alone would hold much of the server:
  `n` (or `best_of`) above LLMFLEET_MAX_N, `max_tokens` above LLMFLEET_MAX_TOKENS (400, naming the field).
- a body that is not a JSON object, a field vLLM does not know (it would ignore it silently), a sampling setting of
  the wrong type and malformed `messages` (400, naming the field): `check_fields`, which the LiteLLM gateway's guard
  (gateway/guard.py) calls too, so every path to a backend answers bad input with the same words.
Every completion's answer names the server in `x-fleet-backend` (LLMFLEET_SERVER_NAME), whichever lane it took.
A stream's headers are held until its first chunk (its first token), or until another answer of this server sends
a chunk (the engine is alive; this stream waits in its queue): a stream on a hung engine then says nothing, and the
front door's first-byte timeout sends it again elsewhere, whether the whole process hangs or only its engine does
(render/door.py). A stream that waits LLMFLEET_ENGINE_HUNG_S (3/4 of the plan's first-token timeout) with no chunk of
any answer of this server meanwhile marks the engine hung: /health answers 503 until an answer sends a chunk again,
so the router (and Kubernetes' readiness probe) takes the server out, where vLLM's own /health says 200 as long as
its API process runs, however long its engine hangs. What brings it back is the gateway's LiteLLM, whose health
checks send every server a one-token completion every few seconds. A stream that has begun and then hears nothing
from any answer of its server for LLMFLEET_STREAM_STALL_S (the device's first-token timeout, never the synthetic
model's short one: a live stream cut is lost) ends with an error event in the OpenAI shape, never a [DONE], and
marks the engine hung too: the router keeps an open stream alive with its pings, so nothing outside the server can
end it sooner than the router's 600 s request timeout.

On the router lane a user's key reaches here by name only: the front door puts `llmfleet-key=NAME;models=A,B` in
`x-correlation-id`, one of the few headers SMG passes on (the door sets it on every router request, so no client's
own value gets through, and only the backends' key reaches this far). For such a request this:
- refuses a model the key may not use (403, naming the key and its models);
- counts its usage from vLLM's own `usage` (for a stream, vLLM is asked for its usage chunk, which a client that did
  not ask for it never sees), as per-key Prometheus series on this server's /metrics, and reports it to the gateway
  (LLMFLEET_USAGE_URL), which keeps the totals and the key's tokens-per-minute window.
The caps come from the plan (src/llmfleet/plan/serving.py); the known fields from vLLM's own request models. Standard
library only (vLLM is imported where it runs): it runs in any vLLM image and in the gateway.
vLLM adds it outermost, so it runs before vLLM's own key check.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = ("/health", "/metrics")  # health checks and Prometheus, no key (as vLLM serves them)
KEYED_PREFIX = "/v1/"  # vLLM checks the key on these itself
ROUTES = {"/v1/chat/completions": "chat", "/v1/completions": "completions"}  # whose bodies are read and checked
TOKEN_FIELDS = ("max_tokens", "max_completion_tokens")
CHOICE_FIELDS = ("n", "best_of")
ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
# The sampling settings people get wrong most; vLLM checks the rest, with messages of its own.
TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "max_tokens": ((int,), "a whole number of tokens"),
    "max_completion_tokens": ((int,), "a whole number of tokens"),
    "n": ((int,), "a whole number"),
    "temperature": ((int, float), "a number"),
    "top_p": ((int, float), "a number between 0 and 1"),
    "stream": ((bool,), "true or false"),
}
UNREADABLE = "The request body could not be read: send a JSON object encoded as UTF-8."
KEY_HEADER = b"x-correlation-id"  # carries the user's key name through SMG (render/door.py sets it)
KEY_TAG = "llmfleet-key="
USAGE_REPORT_TIMEOUT_S = 2
USAGE_REPORT_EVERY_S = 1.0  # a key's tokens reach its tpm window this late at most
ENGINE_CHECK_S = 0.25  # how often a held stream looks for another answer's progress
LATE_WAKE_S = 0.5  # a check this late means the host starved the API process: it judges no engine on that round
HEALTH_PATH = "/health"
log = logging.getLogger("llmfleet.backend_guard")


def _setting(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name) or default)
    except ValueError:
        return default


class Refusal(Exception):
    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


def read_request(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a Refusal saying what is wrong with it."""
    try:
        request = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise Refusal(400, UNREADABLE) from None
    except ValueError as e:
        raise Refusal(400, f"Invalid JSON in the request body: {e}. Send one JSON object.") from None
    if not isinstance(request, dict):
        raise Refusal(400, f"The request body must be a JSON object, not {json.dumps(request)[:40]}.")
    return request


def check_fields(route: str, request: dict[str, Any], known: Collection[str]) -> None:
    """Raise a Refusal naming the first field a client got wrong: one vLLM does not know for this route ("chat" or
    "completions"), a sampling setting of the wrong type, or malformed chat `messages`."""
    unknown = sorted(set(request) - set(known))
    if unknown:
        hints = [f"{u} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(u, known, 1)) else u for u in unknown]
        raise Refusal(
            400,
            f"Unknown parameter(s): {', '.join(hints)}. The model server would ignore them; remove them, or use one "
            "of the parameters vLLM documents for this endpoint.",
            unknown[0],
        )
    for field, (kinds, what) in TYPES.items():
        value = request.get(field)
        if value is not None and ((isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds)):
            raise Refusal(400, f"{field} must be {what}, not {json.dumps(value)[:40]}.", field)
    if route == "chat":
        _check_messages(request.get("messages"))


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise Refusal(400, '`messages` must be a non-empty list of {"role": ..., "content": ...} objects.', "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise Refusal(
                400,
                f"messages[{i}] must be an object with `role` and `content`, not {json.dumps(message)[:60]}.",
                f"messages[{i}]",
            )
        if message.get("role") not in ROLES:
            raise Refusal(
                400,
                f"messages[{i}].role is {message.get('role')!r}; use one of {', '.join(sorted(ROLES))}.",
                f"messages[{i}].role",
            )


@functools.cache
def vllm_fields() -> dict[str, frozenset[str]]:
    """The fields this server's vLLM understands per route, read from its own request models (as
    scripts/vllm_params.py renders gateway/params.yaml); none where this vLLM keeps them elsewhere, so the check of
    unknown fields is skipped rather than refusing everything."""
    try:
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
        from vllm.entrypoints.openai.completion.protocol import CompletionRequest
    except ImportError:
        return {}
    return {route: frozenset(model.model_fields) for route, model in
            (("chat", ChatCompletionRequest), ("completions", CompletionRequest))}  # fmt: skip


def check_caps(request: dict[str, Any], max_n: int, max_tokens: int) -> None:
    """Raise a Refusal for a request that would hold too much of the server."""
    limits = (
        (CHOICE_FIELDS, max_n, "{field} is {value}; this fleet allows at most {cap} choices per request (a quarter "
         "of a server's batch). Ask for fewer, or send several requests."),
        (TOKEN_FIELDS, max_tokens, "{field} is {value}; this model's servers allow at most max_model_len={cap} "
         "tokens, prompt included. Ask for fewer."),
    )  # fmt: skip
    for fields, cap, message in limits:
        for field in fields:
            value = request.get(field)
            if isinstance(value, int) and not isinstance(value, bool) and value > cap:
                raise Refusal(400, message.format(field=field, value=value, cap=cap), field)


class BackendGuard:
    def __init__(self, app: App) -> None:
        self.app = app
        key = os.environ.get("VLLM_API_KEY", "")
        self.key_hash = hashlib.sha256(f"Bearer {key}".encode()).digest() if key else None
        self.max_body = int(_setting("LLMFLEET_MAX_BODY_MB", 8) * 2**20)
        self.max_n = int(_setting("LLMFLEET_MAX_N", 16))
        self.max_tokens = int(_setting("LLMFLEET_MAX_TOKENS", 1 << 30))
        self.name = os.environ.get("LLMFLEET_SERVER_NAME", "").encode()
        self.usage = UsageSink(os.environ.get("LLMFLEET_USAGE_URL", ""), key)
        self.hung_after = _setting("LLMFLEET_ENGINE_HUNG_S", 10)
        self.stall_after = _setting("LLMFLEET_STREAM_STALL_S", 20)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        try:
            if not (path in OPEN_PATHS or path.startswith(KEYED_PREFIX)):
                raise Refusal(404, f"{path} is not served here: this server answers the gateway only.")
            if path == HEALTH_PATH and (hung := Progress.hung_for()) is not None:
                raise Refusal(503, f"The engine has sent no token for {hung:.0f} s while a stream waited on it: "
                                   "out of rotation until it sends one.")  # fmt: skip
            route = ROUTES.get(path)
            if scope["type"] != "http" or scope.get("method") != "POST" or route is None:
                await self.app(scope, receive, send)
                return
            self._check_key(scope)
            body = await self._read(receive)
            request = read_request(body)
            known = vllm_fields().get(route)
            check_fields(route, request, request.keys() if known is None else known)
            check_caps(request, self.max_n, self.max_tokens)
            user = UserKey.sent(scope)
            if user is not None:
                user.check_model(request)
                body = user.ask_usage(request, body)
        except Refusal as refusal:
            await _answer(scope, send, refusal)
            return
        named = _named(send, self.name) if self.name else send
        meter = None if user is None else Meter(user, str(request.get("model", "")), named)
        app_send = named if meter is None else meter.send
        if request.get("stream") is True:
            opener = StreamOpener(self.hung_after, self.stall_after)
            await opener.run(self.app, scope, _replay(body, receive), app_send)
        else:
            await self.app(scope, _replay(body, receive), _with_progress(app_send))
        if meter is not None and meter.usage is not None:
            self.usage.add(user.name, meter.model, *meter.usage)

    def _check_key(self, scope: Scope) -> None:
        if self.key_hash is None:
            return
        sent = next((v for k, v in scope.get("headers", []) if k == b"authorization"), b"")
        if not hmac.compare_digest(hashlib.sha256(sent).digest(), self.key_hash):
            raise Refusal(401, "The backends' key is missing or wrong: send requests through the gateway.")

    async def _read(self, receive: Receive) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Refusal(400, "The client went away before sending the whole body.")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise Refusal(413, f"The request body is over {self.max_body / 2**20:g} MiB.")
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)


class UserKey:
    """A user's key as the front door names it (`x-correlation-id: llmfleet-key=NAME;models=A,B`)."""

    def __init__(self, name: str, models: tuple[str, ...]) -> None:
        self.name, self.models = name, models
        self.hide_usage = False  # a stream whose client did not ask for the usage chunk: it is taken out again

    @classmethod
    def sent(cls, scope: Scope) -> UserKey | None:
        value = next((v for k, v in scope.get("headers", []) if k == KEY_HEADER), b"").decode("latin-1")
        if not value.startswith(KEY_TAG):
            return None
        fields = dict(part.strip().partition("=")[::2] for part in value.split(";"))
        models = tuple(m for m in fields.get("models", "").split(",") if m)
        return cls(fields.get(KEY_TAG.removesuffix("="), ""), models)

    def check_model(self, request: dict[str, Any]) -> None:
        model = request.get("model")
        if self.models and model not in self.models:
            raise Refusal(403, f"The key {self.name!r} may not use the model {model!r}; it may use "
                          f"{', '.join(self.models)}.", "model")  # fmt: skip

    def ask_usage(self, request: dict[str, Any], body: bytes) -> bytes:
        """The body to hand vLLM: a stream asks for vLLM's usage chunk, which is what the key is charged."""
        if request.get("stream") is not True:
            return body
        options = request.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            return body
        self.hide_usage = True
        options = options if isinstance(options, dict) else {}
        return json.dumps({**request, "stream_options": {**options, "include_usage": True}}).encode()


class Meter:
    """Passes an answer on, and reads the usage vLLM puts in it: (prompt tokens, completion tokens)."""

    def __init__(self, user: UserKey, model: str, send: Send) -> None:
        self.user, self.model, self.downstream = user, model, send
        self.usage: tuple[int, int] | None = None
        self.ok = False
        self.parts: list[bytes] = []
        self.streamed = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.ok = message["status"] == 200
            headers = dict(message.get("headers", []))
            self.streamed = headers.get(b"content-type", b"").startswith(b"text/event-stream")
        elif message["type"] == "http.response.body" and self.ok:
            chunk = message.get("body", b"")
            if self.streamed:
                if b'"usage":{' in chunk:  # vLLM's usage chunk, the last before [DONE]: a byte search per chunk
                    message = {**message, "body": self._take_usage(chunk)}
            else:
                self.parts.append(chunk)
                if not message.get("more_body"):
                    self._read_usage(b"".join(self.parts))
        await self.downstream(message)

    def _take_usage(self, chunk: bytes) -> bytes:
        kept = []
        for event in chunk.split(b"\n\n"):
            if b'"usage":{' in event and event.startswith(b"data: "):
                try:
                    data = json.loads(event[len(b"data: ") :])
                except ValueError:
                    kept.append(event)
                    continue
                self._note(data.get("usage"))
                if self.user.hide_usage and data.get("choices") == []:
                    continue  # the chunk vLLM sent only because the guard asked for it
            kept.append(event)
        return b"\n\n".join(kept)

    def _read_usage(self, body: bytes) -> None:
        try:
            answer = json.loads(body)
        except ValueError:
            return
        if isinstance(answer, dict):
            self._note(answer.get("usage"))

    def _note(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self.usage = (int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))


class UsageSink:
    """Where a user's usage goes: Prometheus series on this server's /metrics (by key name, never the key), and the
    gateway (LLMFLEET_USAGE_URL), which adds it to the key's totals and its tokens-per-minute window. Reports are
    gathered for USAGE_REPORT_EVERY_S and sent as one, over one kept-alive connection: a report per answer would
    cost the gateway and this server more CPU than short answers themselves. A report that fails is logged and
    dropped: an answer already sent is never failed by its bookkeeping."""

    def __init__(self, url: str, backend_key: str) -> None:
        self.url, self.backend_key = url, backend_key
        self._pending: dict[str, list[int]] = {}  # key -> [requests, prompt tokens, completion tokens]
        self._flush: asyncio.Task[None] | None = None
        self._client: Any = None

    def add(self, key: str, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        requests, tokens = key_series()
        if requests is not None:
            requests.labels(key=key, model=model).inc()
            tokens.labels(key=key, model=model, kind="prompt").inc(prompt_tokens)
            tokens.labels(key=key, model=model, kind="completion").inc(completion_tokens)
        if not self.url:
            return
        counts = self._pending.setdefault(key, [0, 0, 0])
        counts[0] += 1
        counts[1] += prompt_tokens
        counts[2] += completion_tokens
        if self._flush is None or self._flush.done():
            self._flush = asyncio.get_running_loop().create_task(self._report_soon())

    async def _report_soon(self) -> None:
        await asyncio.sleep(USAGE_REPORT_EVERY_S)
        pending, self._pending = self._pending, {}
        report = [{"key": key, "requests": r, "prompt_tokens": p, "completion_tokens": c}
                  for key, (r, p, c) in pending.items()]  # fmt: skip
        try:
            import httpx

            if self._client is None:
                self._client = httpx.AsyncClient(timeout=USAGE_REPORT_TIMEOUT_S)
            answer = await self._client.post(self.url, json={"usage": report},
                                             headers={"Authorization": f"Bearer {self.backend_key}"})  # fmt: skip
            if answer.status_code >= 300:
                log.warning("usage of %d key(s) not reported: the gateway answered %s", len(report), answer.status_code)
        except Exception as problem:  # the gateway restarting: this report is lost, the next one is not
            log.warning("usage of %d key(s) not reported: %s", len(report), problem)


@functools.cache
def key_series() -> tuple[Any, Any]:
    """Per-key counters on this server's /metrics (vLLM serves prometheus_client's registry); none without it."""
    try:
        from prometheus_client import Counter
    except ImportError:
        return None, None
    return (
        Counter("llmfleet_key_requests", "Answered completions of a user's key (router lane)", ["key", "model"]),
        Counter("llmfleet_key_tokens", "Tokens of a user's key's answered completions (router lane)",
                ["key", "model", "kind"]),
    )  # fmt: skip


def _named(send: Send, name: bytes) -> Send:
    """`send`, with the answer's headers naming this server."""

    async def named(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), (b"x-fleet-backend", name)]
        await send(message)

    return named


class Progress:
    """When this server last sent a chunk of any answer: proof that its engine is alive; and since when a stream
    has waited on it in vain (the engine is taken for hung until the next chunk)."""

    last = 0.0
    waited_since: float | None = None

    @classmethod
    def mark(cls) -> None:
        cls.last = time.monotonic()

    @classmethod
    def waited_in_vain(cls, since: float) -> None:
        """A stream has waited since `since` and no answer has sent a chunk after it: the engine is taken for hung."""
        if cls.waited_since is None or cls.last > cls.waited_since:
            cls.waited_since = since

    @classmethod
    def hung_for(cls) -> float | None:
        """Seconds without a chunk since a stream began waiting in vain; None while the engine looks alive."""
        if cls.waited_since is None or cls.last > cls.waited_since:
            return None
        return time.monotonic() - cls.waited_since


def _with_progress(send: Send) -> Send:
    """`send`, marking Progress with each chunk of an answer that succeeded (an error proves nothing of the engine)."""
    ok = False

    async def marking(message: Message) -> None:
        nonlocal ok
        if message["type"] == "http.response.start":
            ok = message["status"] == 200
        elif ok and message.get("body"):
            Progress.mark()
        await send(message)

    return marking


class StreamOpener:
    """Runs vLLM for one streamed completion, holding the stream's headers until its first chunk, or until another
    answer of this server sends one. vLLM sends a stream's headers as soon as it has read the prompt, so without this
    a stream on a hung engine would look alive to the door; with it, a stream queued behind live work is not cut."""

    def __init__(self, hung_after: float, stall_after: float = 0) -> None:
        self.hung_after = hung_after  # a wait this long with no chunk of any answer: the engine is hung
        self.stall_after = stall_after  # an open stream is ended with an error event after this long with none
        self.started = time.monotonic()
        self.ended = False  # by the guard: whatever vLLM sends after is dropped
        self.held: Message | None = None
        self.held_at = 0.0
        self.ok = False  # a 200: its chunks are tokens
        self.gone = False  # its client left
        self.open = False
        self.lock = asyncio.Lock()  # the headers go once, before any chunk, from whichever task opens them

    async def run(self, app: App, scope: Scope, receive: Receive, send: Send) -> None:
        self.downstream = send

        async def watched() -> Message:
            message = await receive()
            self.gone = self.gone or message["type"] == "http.disconnect"
            return message

        answer = asyncio.ensure_future(app(scope, watched, self.send))
        try:
            woke = time.monotonic()
            while True:
                # Held, it looks for progress often; open, only as often as a stall needs to be seen.
                check = ENGINE_CHECK_S if not self.open else max(ENGINE_CHECK_S, self.stall_after / 4)
                done, _ = await asyncio.wait({answer}, timeout=check)
                if done:
                    break
                slept, woke = time.monotonic() - woke, time.monotonic()
                if slept > 2 * check + LATE_WAKE_S:
                    continue  # this process itself did not run: the chunks it has not sent yet prove nothing
                if not self.open:
                    if self.held is not None and Progress.last > self.held_at:
                        async with self.lock:
                            await self._open()
                    elif self._waited_in_vain():
                        Progress.waited_in_vain(self.started)
                elif self._stalled():
                    Progress.waited_in_vain(Progress.last)
                    await self._end_with_error()
                    return
                elif self.stall_after <= 0:
                    break  # open, and nothing more to watch: wait for the answer alone
            await answer
        finally:
            answer.cancel()  # a no-op once it is done; vLLM aborts an answer the guard ended

    def _stalled(self) -> bool:
        """Open, its client still reading, and no answer of this server has sent a chunk for `stall_after`: the
        engine hangs mid-answer (a whole process that hangs runs no guard either; the router keeps its stream)."""
        quiet = time.monotonic() - Progress.last
        return self.ok and not self.gone and 0 < self.stall_after <= quiet

    async def _end_with_error(self) -> None:
        """An error event in the OpenAI shape, then the end of the stream: never a [DONE] after a stream cut short."""
        self.ended = True
        error = {"message": f"The model server sent no token for {self.stall_after:g} s mid-answer: its engine is "
                            "taken for hung. Send the request again; the gateway routes it to another server.",
                 "type": "server_error", "param": None, "code": 504}  # fmt: skip
        await self.downstream({"type": "http.response.body", "body": b"data: " + json.dumps({"error": error}).encode()
                               + b"\n\n", "more_body": True})  # fmt: skip
        await self.downstream({"type": "http.response.body", "body": b"", "more_body": False})

    def _waited_in_vain(self) -> bool:
        """Its client still waits, and no answer of this server has sent a chunk for `hung_after` since it began."""
        waited = time.monotonic() - self.started
        return not self.gone and 0 < self.hung_after <= waited and Progress.last < self.started

    async def send(self, message: Message) -> None:
        if self.ended:
            return
        if self.open:
            # Chunks sent after the client left are vLLM closing the stream it aborted (the door's first try of a
            # stream on this hung engine), not tokens.
            if self.ok and not self.gone and message.get("body"):
                Progress.mark()
            await self.downstream(message)
            return
        if message["type"] == "http.response.start":
            self.held, self.held_at, self.ok = message, time.monotonic(), message["status"] == 200
            return
        if message["type"] == "http.response.body" and not message.get("body") and message.get("more_body"):
            return  # an empty chunk is not a token
        async with self.lock:
            await self._open()
        await self.send(message)

    async def _open(self) -> None:
        if not self.open:
            if self.held is not None:  # always, from vLLM: its headers come first
                await self.downstream(self.held)
            self.open = True


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body, once, as vLLM would have received it; then whatever the client sends next (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(scope: Scope, send: Send, refusal: Refusal) -> None:
    if scope["type"] != "http":  # a websocket: refuse the handshake
        await send({"type": "websocket.close", "code": 1008})
        return
    kind = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 503: "server_error"}.get(
        refusal.status, "invalid_request_error"
    )
    body = json.dumps(
        {"error": {"message": refusal.message, "type": kind, "param": refusal.param, "code": refusal.status}}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
