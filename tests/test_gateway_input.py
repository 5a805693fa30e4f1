"""Bad input at the gateway: each gets a 4xx whose message says what to change, never a 5xx, and the gateway
goes on serving. Against the real stack on its default lane: the door, the router (SMG) and each backend's guard
(vllm/backend_guard.py). LiteLLM's lane answers the same cases in its own words (test_litellm_lane.py)."""

from __future__ import annotations

import pytest
from bad_input import BAD, HI, MODEL, ROUTER_STATUS, ROUTER_WORDS
from conftest import Stack
from keytools import post

pytestmark = pytest.mark.stack


@pytest.mark.parametrize(("what", "body", "status", "words", "who"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_a_4xx_saying_what_to_change(stack: Stack, what: str, body: bytes | dict, status: int,
                                                     words: list[str], who: str) -> None:  # fmt: skip
    response = post(stack, body)
    assert response.status_code == ROUTER_STATUS.get(what, status), f"{what}: {response.text}"
    message = response.json()["error"]["message"]
    for word in ROUTER_WORDS.get(what, words):
        assert word in message, f"{what} ({who}): {message!r} lacks {word!r}"
    assert "127.0.0.1" not in message and "Traceback" not in message and "Exception -" not in message


def test_a_10_mb_body_is_refused_at_the_gateway_with_413(stack: Stack) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "x" * 10_000_000}], "max_tokens": 4}
    response = post(stack, body)
    assert response.status_code == 413
    message = response.json()["error"]["message"]
    assert "at most 4 MiB" in message and "GATEWAY_MAX_BODY_MB" in message


def test_the_gateway_keeps_serving_after_every_bad_request(stack: Stack) -> None:
    for _, body, *_ in BAD:
        assert post(stack, body).status_code < 500
    good = post(stack, {"model": MODEL, "messages": HI, "max_tokens": 4})
    assert good.status_code == 200 and good.json()["usage"]["completion_tokens"] == 4


def test_vllm_extensions_still_pass(stack: Stack) -> None:
    """The guard refuses unknown fields, not vLLM's own sampling extensions."""
    body = {"model": MODEL, "messages": HI, "max_tokens": 6, "ignore_eos": True, "top_k": 5, "min_p": 0.1,
            "repetition_penalty": 1.1, "seed": 7}  # fmt: skip
    response = post(stack, body)
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] == 6  # ignore_eos reached vLLM


def test_legacy_completions_route_is_guarded_too(stack: Stack) -> None:
    bad = post(stack, {"model": MODEL, "prompt": "hi", "frobnicate": 1}, route="/v1/completions")
    assert bad.status_code == 400 and "frobnicate" in bad.json()["error"]["message"]
    good = post(stack, {"model": MODEL, "prompt": "hi", "max_tokens": 3}, route="/v1/completions")
    assert good.status_code == 200, good.text
