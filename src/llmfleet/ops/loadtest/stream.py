"""Timing an OpenAI-compatible streamed answer (server-sent events), line by line, as the user sees it.

A 200 status is not success: the gateway reports a failure after output has started as an `error` event inside
the stream, and a stream cut short never sends `[DONE]`. Both count as failures here.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Answer:
    ok: bool
    error: str | None
    ttft: float | None  # seconds to the first content; None if none came
    e2e: float  # seconds to the end of the answer
    gaps: list[float] = field(default_factory=list)  # seconds between successive content chunks
    output_tokens: int = 0  # the server's count (usage) when sent, else the content chunks

    @property
    def tpot(self) -> float | None:
        """Time per output token after the first: (e2e - ttft) / (tokens - 1), as vLLM's benchmark defines it."""
        if self.ttft is None or self.output_tokens < 2:
            return None
        return (self.e2e - self.ttft) / (self.output_tokens - 1)

    @property
    def tokens_per_second(self) -> float | None:
        """Decode speed one user sees: tokens after the first over the time they took."""
        tpot = self.tpot
        return 1 / tpot if tpot else None


_LINE_END = re.compile("\r\n|\r|\n")


class SSELines:
    """Cuts a stream's text into lines where the SSE spec does: at CRLF, LF or CR only. httpx's `iter_lines` also
    cuts at U+2028, U+0085 and the like (str.splitlines), which JSON leaves unescaped inside a token's text, so an
    event whose token holds one read as two broken halves (2026-12-04, fleet-tiny's random tokens)."""

    def __init__(self) -> None:
        self.pending = ""

    def feed(self, text: str) -> list[str]:
        text = self.pending + text
        cut = len(text) - 1 if text.endswith("\r") else len(text)  # a CR at the end may be half of a CRLF
        *lines, rest = _LINE_END.split(text[:cut])
        self.pending = rest + text[cut:]
        return lines

    def end(self) -> list[str]:
        rest, self.pending = self.pending.rstrip("\r"), ""
        return [rest] if rest else []


def sse_lines(response: httpx.Response) -> Iterator[str]:
    lines = SSELines()
    for text in response.iter_text():
        yield from lines.feed(text)
    yield from lines.end()


async def asse_lines(response: httpx.Response) -> AsyncIterator[str]:
    lines = SSELines()
    async for text in response.aiter_text():
        for line in lines.feed(text):
            yield line
    for line in lines.end():
        yield line


class StreamTimer:
    """Feed it each line of the response body as it arrives; `finish` says what the user got."""

    def __init__(self, started: float, clock: Callable[[], float] = time.perf_counter) -> None:
        self.started = started
        self.clock = clock
        self.first: float | None = None
        self.last: float | None = None
        self.gaps: list[float] = []
        self.chunks = 0
        self.usage_tokens: int | None = None
        self.done = False
        self.error: str | None = None

    def feed(self, line: str) -> None:
        if not line.startswith("data:"):
            return  # blank separators, comments (": ping"), event names
        payload = line[5:].strip()
        if payload == "[DONE]":
            self.done = True
            return
        try:
            event = json.loads(payload)
        except ValueError:
            self.error = self.error or f"unreadable event: {payload[:120]}"
            return
        if event.get("error"):
            error = event["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            self.error = self.error or f"error event in the stream: {str(message)[:200]}"
            return
        if event.get("usage"):
            self.usage_tokens = event["usage"].get("completion_tokens")
        for choice in event.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content") or delta.get("reasoning_content"):
                now = self.clock()
                if self.first is None:
                    self.first = now
                else:
                    self.gaps.append(now - (self.last or now))
                self.last = now
                self.chunks += 1

    def finish(self) -> Answer:
        end = self.clock()
        error = self.error or (None if self.done else "the stream ended without [DONE]")
        return Answer(
            ok=error is None,
            error=error,
            ttft=None if self.first is None else self.first - self.started,
            e2e=end - self.started,
            gaps=self.gaps,
            output_tokens=self.usage_tokens if self.usage_tokens is not None else self.chunks,
        )


@dataclass
class Streamed:
    started: float  # on the clock the request was timed with
    backend: str | None  # the server that answered (backend_of); None when the connection broke
    answer: Answer


def backend_of(headers: Mapping[str, str]) -> str | None:
    """The server that answered: the backend guard's header on the router lane, LiteLLM's id of it on its own lane
    (both the plan's server name, or the pod's on Kubernetes)."""
    return headers.get("x-fleet-backend") or headers.get("x-litellm-model-id")


async def ask_streamed(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], body: dict[str, Any], clock: Callable[[], float]
) -> Streamed:
    """Send one streamed request and time it as the user sees it; HTTP errors and broken connections are answers
    with an error, never exceptions."""
    started = clock()
    timer = StreamTimer(started, clock)
    backend = None
    try:
        async with client.stream("POST", url, json=body, headers=headers) as response:
            backend = backend_of(response.headers)
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                timer.error = f"HTTP {response.status_code}: {text[:200]}"
            else:
                async for line in asse_lines(response):
                    timer.feed(line)
    except httpx.HTTPError as e:
        timer.error = timer.error or f"the connection broke: {e!r}"
        backend = None
    return Streamed(started, backend, timer.finish())


def whole_answer(body: str, started: float, ended: float) -> Answer:
    """A non-streamed answer: the first token is seen with the last."""
    try:
        usage = json.loads(body).get("usage") or {}
    except ValueError:
        return Answer(False, f"unreadable answer: {body[:120]}", None, ended - started)
    return Answer(True, None, ended - started, ended - started, [], usage.get("completion_tokens", 0))
