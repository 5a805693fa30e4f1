"""Locust users that talk to the gateway through the OpenAI-compatible API, streaming by default, and record what a
person waiting for the answer feels: time to first token, inter-token latency, time per output token, end-to-end
latency, output tokens and tokens/s.

    locust -f loadtest/locustfile.py --host http://127.0.0.1:4000 --headless -u 8 -r 2 -t 60s \
        --model smollm2-135m --scenario mixed --max-tokens 128

`llmfleet loadtest` runs it for you, adds SLO gates, sweeps and a report. The key comes from --api-key or
LITELLM_MASTER_KEY. Locust's row for the request itself reports end-to-end latency (locust alone would report the
time to the response headers for a stream); the LLM rows report the rest. Locust rounds times above 100 ms, so
per-token times are sent in microseconds.
"""

from __future__ import annotations

import codecs
import json
import os
import time
from pathlib import Path
from typing import Any

from locust import HttpUser, between, events, task
from locust.env import Environment

from llmfleet.ops.loadtest.scenarios import LANGUAGES, Scenario
from llmfleet.ops.loadtest.stream import Answer, SSELines, StreamTimer, whole_answer

HERE = Path(__file__).resolve().parent
_samples: Any = None  # the per-request record file, opened at test start


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    group = parser.add_argument_group("llmfleet")
    group.add_argument("--model", default="", help="Model to ask; default: the first the gateway lists.")
    group.add_argument("--max-tokens", type=int, default=64, help="Output tokens per answer.")
    group.add_argument("--scenario", default="short", help="short, long or mixed (loadtest/scenarios.yaml).")
    group.add_argument("--language", default="both", choices=["both", *LANGUAGES], help="Prompt language.")
    group.add_argument("--no-stream", action="store_true", help="Ask for whole answers instead of streams.")
    group.add_argument("--no-ignore-eos", action="store_true", help="Let answers end early at end-of-sequence.")
    group.add_argument("--api-key", default="", help="The gateway key; default: $LITELLM_MASTER_KEY.")
    group.add_argument("--samples-file", default="", help="Write one JSON line per request here.")


@events.test_start.add_listener
def _start(environment: Environment, **_: Any) -> None:
    global _samples
    options = environment.parsed_options
    if options.samples_file:
        _samples = Path(options.samples_file).open("a", encoding="utf-8")  # noqa: SIM115 - closed at test stop


@events.test_stop.add_listener
def _stop(environment: Environment, **_: Any) -> None:
    if _samples:
        _samples.flush()


class ChatUser(HttpUser):
    """HttpUser, not FastHttpUser: requests can hand over each event as it arrives (`chunk_size=None`), where
    FastHttpUser's reads wait until a whole chunk_size of bytes is there, which would delay every token."""

    wait_time = between(0, 0)  # closed loop: each user sends its next request as soon as an answer ends

    def on_start(self) -> None:
        options = self.environment.parsed_options
        key = options.api_key or os.environ.get("LITELLM_MASTER_KEY", "")
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.model = options.model or self._first_model()
        languages = LANGUAGES if options.language == "both" else (options.language,)
        self.scenario = Scenario(HERE / "scenarios.yaml", options.scenario, languages, seed=id(self))
        self.stream = not options.no_stream

    def _first_model(self) -> str:
        with self.client.get("/v1/models", headers=self.headers, name="/v1/models", catch_response=True) as r:
            models = [m["id"] for m in r.json().get("data", [])] if r.status_code == 200 else []
            if not models:
                r.failure(f"no model to ask: /v1/models answered {r.status_code}")
                raise RuntimeError("no model")
            return models[0]

    @task
    def chat(self) -> None:
        options = self.environment.parsed_options
        prompt = self.scenario.draw()
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt.text}],
            "max_tokens": options.max_tokens,
            "stream": self.stream,
        }
        if self.stream:
            body["stream_options"] = {"include_usage": True}  # the server's token count, not our chunk count
        if not options.no_ignore_eos:
            body["ignore_eos"] = True  # every answer as long as asked, so runs compare
        name = f"chat {prompt.kind} ({'stream' if self.stream else 'whole'})"
        started_at = time.time()
        started = time.perf_counter()
        with self.client.request(
            "POST", "/v1/chat/completions", name=name, data=json.dumps(body), headers=self.headers,
            stream=self.stream, catch_response=True,
            # Generous: a long prompt on a loaded server may wait minutes; the gateway's timeouts end real hangs.
            timeout=(10, 600),
        ) as response:  # fmt: skip
            answer = self._read(response, started)
            # Locust would report the time to the response headers; the user waits for the whole answer.
            response.request_meta["response_time"] = answer.e2e * 1000
            response.request_meta["response_length"] = answer.output_tokens
            if answer.ok:
                response.success()
            else:
                response.failure(answer.error)
        self._report(answer, prompt.kind, prompt.language, started_at)

    def _read(self, response: Any, started: float) -> Answer:
        if response.status_code != 200:
            text = response.text
            return Answer(False, f"HTTP {response.status_code}: {text[:200]}", None, time.perf_counter() - started)
        if not self.stream:
            return whole_answer(response.text, started, time.perf_counter())
        timer = StreamTimer(started)
        text = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character may span two chunks
        lines = SSELines()
        try:
            for chunk in response.iter_content(chunk_size=None, decode_unicode=False):  # each as it arrives
                for line in lines.feed(text.decode(chunk)):
                    timer.feed(line)
            for line in [*lines.feed(text.decode(b"", final=True)), *lines.end()]:
                timer.feed(line)
        except Exception as e:
            timer.error = timer.error or f"the stream broke: {e!r}"
        return timer.finish()

    def _report(self, answer: Answer, kind: str, language: str, started_at: float) -> None:
        fire = self.environment.events.request.fire
        if answer.ok and answer.ttft is not None:
            fire(request_type="LLM", name="ttft_ms", response_time=answer.ttft * 1000, response_length=0,
                 exception=None, context={})  # fmt: skip
        if answer.ok and answer.tpot is not None:
            itl = sum(answer.gaps) / len(answer.gaps) if answer.gaps else answer.tpot
            fire(request_type="LLM", name="itl_us", response_time=itl * 1e6, response_length=0, exception=None,
                 context={})  # fmt: skip
            fire(request_type="LLM", name="tpot_us", response_time=answer.tpot * 1e6,
                 response_length=answer.output_tokens, exception=None, context={})  # fmt: skip
            fire(request_type="LLM", name="tokens_per_s", response_time=answer.tokens_per_second or 0,
                 response_length=answer.output_tokens, exception=None, context={})  # fmt: skip
        if _samples:
            record = {
                "t": round(started_at, 3), "kind": kind, "lang": language, "ok": answer.ok, "error": answer.error,
                "ttft": answer.ttft, "e2e": answer.e2e, "tokens": answer.output_tokens,
                "gaps": [round(g, 6) for g in answer.gaps],
            }  # fmt: skip
            _samples.write(json.dumps(record) + "\n")
