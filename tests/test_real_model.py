"""What only a real model can pass: the CPU plan's smollm2-135m (SmolLM2 135M Instruct), booted with
`llmfleet up --plan cpu` and asked through the gateway with the official `openai` SDK.

The stack's other tests run the synthetic fleet-tiny, whose answers are random tokens; these judge the answers:
facts, the chat template, seeds, stop sequences, token counts, structured output and forced tool calls.
`make test-realmodel` runs them (a few minutes: the model converts once, then each server loads for about two).

LLMFLEET_REAL_MODEL_URL (and LLMFLEET_REAL_MODEL_KEY) point them at a server already running instead, such as
one vLLM server started by hand on the converted folder: the same checks, without booting a stack.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest
from conftest import assert_logged_kv_cache_is_the_planners_estimate, booted

pytestmark = pytest.mark.realmodel

MODEL = "smollm2-135m"
PLAN = "cpu"  # the built-in CPU plan: two servers of the real model
SERVER_LOGS: list[Path] = []  # the booted servers' logs (none when LLMFLEET_REAL_MODEL_URL names a server)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    if url := os.environ.get("LLMFLEET_REAL_MODEL_URL"):
        yield openai.OpenAI(base_url=url, api_key=os.environ.get("LLMFLEET_REAL_MODEL_KEY", "none"), max_retries=0,
                            timeout=120)  # fmt: skip
        return
    # Two servers compiling the model on a shared 2-core host took up to 8 minutes each to be healthy: more than
    # VLLM_START_TIMEOUT's default allows.
    with booted(tmp_path_factory.mktemp("real-model"), PLAN, timeout=1800, env={"VLLM_START_TIMEOUT": "1500"}) as stack:
        assert stack.state["models"] == [MODEL]
        SERVER_LOGS[:] = [Path(s["log"]) for s in stack.state["services"] if s["name"].startswith("vllm-")]
        yield openai.OpenAI(base_url=f"{stack.gateway}/v1", api_key=stack.key, max_retries=0, timeout=120)


def ask(client: openai.OpenAI, question: str, system: str | None = None, **options: Any) -> Any:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    return client.chat.completions.create(model=MODEL, messages=messages, **options)  # type: ignore[arg-type]


def streamed(client: openai.OpenAI, question: str, **options: Any) -> tuple[str, Any, list[Any]]:
    """The text, the usage of the last chunk, and every chunk of a streamed answer."""
    chunks = list(ask(client, question, stream=True, stream_options={"include_usage": True}, **options))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks[-1].usage, chunks


def test_the_gateway_serves_the_real_model(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [MODEL]


def test_each_servers_kv_cache_is_the_planners_estimate_within_1_percent(client: openai.OpenAI) -> None:
    if not SERVER_LOGS:
        pytest.skip("LLMFLEET_REAL_MODEL_URL names a server this test did not start: its log is not here")
    assert_logged_kv_cache_is_the_planners_estimate(SERVER_LOGS, MODEL)


# Greedy decoding takes the likeliest first token, and a 135M model's is often a near tie (bf16 logits): "What is
# the capital of France?" alone starts with "L" or "The" at equal odds, and "L'Étoile, la Marseillaise..." never names
# Paris. With this system prompt the answer starts "The capital of" by a clear margin (about 1.7 nats for France and
# 2.5 for Japan, measured with logprobs on vLLM CPU 0.32).
BRIEF = "You are a helpful assistant. Answer in one short sentence."


@pytest.mark.parametrize(("question", "word"), [("What is the capital of France?", "Paris"),
                                                ("What is the capital of Japan?", "Tokyo")])  # fmt: skip
def test_a_factual_question_at_temperature_zero(client: openai.OpenAI, question: str, word: str) -> None:
    answer = ask(client, question, system=BRIEF, temperature=0, max_tokens=32).choices[0].message.content
    assert word in answer, answer


def test_a_system_prompt_changes_the_answer(client: openai.OpenAI) -> None:
    """The system prompt reaches the model through SmolLM2's chat template (which otherwise puts its own there: an
    assistant named SmolLM): told its name, the model says it."""
    question = "Who are you?"
    default = ask(client, question, temperature=0, max_tokens=32).choices[0].message.content
    named = ask(client, question, system="You are a helpful AI assistant named Zorblax.", temperature=0,
                max_tokens=32).choices[0].message.content  # fmt: skip
    assert "Zorblax" in named, named
    assert "Zorblax" not in default and named != default, default


def test_a_fixed_seed_gives_the_same_text_streamed_and_not(client: openai.OpenAI) -> None:
    # 16 tokens: bf16 on two cores is not bit-stable between a fresh prefill and one over the prefix cache, and a
    # long sampled continuation can drift on a near-tie (seen here at token 18 of 40); the seed must still decide.
    options = {"temperature": 0.8, "seed": 1234, "max_tokens": 16}
    question = "Write one sentence about the sea."
    whole = ask(client, question, **options).choices[0].message.content
    text, _, _ = streamed(client, question, **options)
    assert whole and text == whole
    again = ask(client, question, **options).choices[0].message.content
    assert again == whole


def test_stop_sequences_end_the_answer_before_them(client: openai.OpenAI) -> None:
    question = "Count from 1 to 10, separated by commas."
    full = ask(client, question, temperature=0, max_tokens=64).choices[0]
    assert "4" in full.message.content and "6" in full.message.content, full.message.content
    stopped = ask(client, question, temperature=0, max_tokens=64, stop=["5"]).choices[0]
    assert stopped.finish_reason == "stop"
    assert "4" in stopped.message.content and "5" not in stopped.message.content, stopped.message.content
    assert full.message.content.startswith(stopped.message.content)


def test_max_tokens_cuts_the_answer(client: openai.OpenAI) -> None:
    reply = ask(client, "Tell me a long story about a dragon.", temperature=0, max_tokens=7)
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 7


def test_the_streams_usage_equals_the_whole_answers(client: openai.OpenAI) -> None:
    question = "Name three colours."
    whole = ask(client, question, temperature=0, max_tokens=24)
    text, usage, _ = streamed(client, question, temperature=0, max_tokens=24)
    assert text == whole.choices[0].message.content
    assert usage is not None and whole.usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        whole.usage.prompt_tokens, whole.usage.completion_tokens, whole.usage.total_tokens,
    )  # fmt: skip


CITY = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
    "required": ["city", "country"],
    "additionalProperties": False,
}


def test_response_format_json_schema_returns_json_that_validates(client: openai.OpenAI) -> None:
    reply = ask(
        client, "Give the capital of France and its country as JSON.", temperature=0, max_tokens=64,
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": CITY, "strict": True}},
    )  # fmt: skip
    answer = json.loads(reply.choices[0].message.content)
    jsonschema.validate(answer, CITY)


PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
FORCED = {"type": "function", "function": {"name": "get_weather"}}
QUESTION = "What is the weather in Paris, in celsius?"
# vLLM forces a named tool call through a structural tag in the parser's format (<tool_call>{"name": ...,
# "arguments": ...}</tool_call> for hermes), but pins the arguments to the tool's schema only for a tool marked
# `strict`, or for every tool when the server runs with `--tool-strict-level parameter`, as the catalog has it for
# smollm2-135m. Without either, this model answered {"name": "get_weather", "arguments": "celsius"}. The gateway
# (LiteLLM 1.106's hosted_vllm provider) deletes `strict` and `additionalProperties: false` from the tools it passes
# on, so through it both cases below rest on the server's flag; straight to vLLM, the first holds without the flag.
STRICTNESS = [pytest.param(True, id="strict-tool"), pytest.param(None, id="server-strict-level")]


def weather(strict: bool | None) -> dict[str, Any]:
    function = {"name": "get_weather", "description": "The current weather in a city.", "parameters": PARAMETERS}
    return {"type": "function", "function": function | ({"strict": strict} if strict is not None else {})}


@pytest.mark.parametrize("strict", STRICTNESS)
def test_a_named_tool_choice_returns_a_call_that_validates(client: openai.OpenAI, strict: bool | None) -> None:
    reply = ask(client, QUESTION, temperature=0, max_tokens=128, tools=[weather(strict)], tool_choice=FORCED)
    [call] = reply.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), PARAMETERS)


@pytest.mark.parametrize("strict", STRICTNESS)
def test_a_named_tool_choice_streamed_reassembles_into_a_call_that_validates(
    client: openai.OpenAI, strict: bool | None
) -> None:
    _, _, chunks = streamed(client, QUESTION, temperature=0, max_tokens=128, tools=[weather(strict)],
                            tool_choice=FORCED)  # fmt: skip
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            call = calls.setdefault(delta.index, {"name": "", "arguments": ""})
            if delta.function and delta.function.name:
                call["name"] += delta.function.name
            if delta.function and delta.function.arguments:
                call["arguments"] += delta.function.arguments
    assert list(calls) == [0], calls
    assert calls[0]["name"] == "get_weather"
    jsonschema.validate(json.loads(calls[0]["arguments"]), PARAMETERS)
