"""Reading a stream's events as the SSE spec cuts them: at CRLF, LF or CR, never inside a token's text. A token of
fleet-tiny's random output (or of any model) may hold U+2028 or U+0085, which JSON leaves unescaped and
str.splitlines (httpx's iter_lines) takes for line ends."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from llmfleet.ops.loadtest.stream import SSELines, ask_streamed

TOKENS = ["a\u2028b", "c\x85d", "e\u2029f", "plain"]


def event(token: str) -> bytes:
    chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": token}}]}
    return b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n"


class Stream(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        body = b"".join(event(t) for t in TOKENS) + b"data: [DONE]\n\n"
        for i in range(0, len(body), 7):  # in pieces that cut characters and line ends in two
            self.wfile.write(body[i : i + 7])
            self.wfile.flush()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Stream)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1/chat/completions"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_lines_end_only_at_crlf_lf_or_cr_even_when_a_crlf_is_cut_in_two() -> None:
    lines = SSELines()
    assert lines.feed("data: a\u2028b\x85c\r") == []  # the CR may be half of a CRLF
    assert lines.feed("\ndata: d\re") == ["data: a\u2028b\x85c", "data: d"]
    assert lines.feed("\n\n") == ["e", ""]
    assert lines.feed("tail") == [] and lines.end() == ["tail"]


def test_a_stream_whose_tokens_hold_unicode_line_separators_is_read_whole(server: str) -> None:
    async def ask() -> object:
        async with httpx.AsyncClient() as client:
            body = {"model": "m", "messages": [], "stream": True}
            return await ask_streamed(client, server, {}, body, time.monotonic)

    answer = asyncio.run(ask()).answer  # type: ignore[attr-defined]
    assert answer.ok, answer.error
    assert answer.output_tokens == len(TOKENS)
