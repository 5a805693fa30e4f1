"""LiteLLM's lane (GATEWAY_DATA_PLANE=litellm): completions go from the door through LiteLLM, with our guard
(gateway/guard.py), its limiter and its load-aware routing (gateway/loadaware.py), to vLLM. The router is the
default lane (test_router_lane.py, on the session's stack); this is the proof that the other lane keeps its own
guarantees, in its own words. Its own native stack (cpu-tiny), since the lane is a setting of the gateway.

Every key whose name and models do not fit the router's header takes this lane on every stack (gateway/auth.py)."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator

import pytest
from bad_input import BAD
from conftest import STACK_MODEL, STACK_PLAN, Stack, booted
from keytools import ask, create_key, early_in_a_minute, listed, post, value

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def litellm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with booted(tmp_path_factory.mktemp("litellm-lane"), STACK_PLAN, env={"GATEWAY_DATA_PLANE": "litellm"}) as stack:
        yield stack


def test_the_master_keys_completions_take_litellm(litellm: Stack) -> None:
    answer = ask(litellm, litellm.key)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-litellm-model-id"] in ("vllm-cpu0", "vllm-cpu1")  # LiteLLM's own header: its lane


@pytest.mark.parametrize(("what", "body", "status", "words", "who"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_a_4xx_saying_what_to_change(litellm: Stack, what: str, body: bytes | dict, status: int,
                                                     words: list[str], who: str) -> None:  # fmt: skip
    response = post(litellm, body)
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    for word in words:
        assert word in message, f"{what}: {message!r} lacks {word!r}"
    assert "Traceback" not in message and "Exception -" not in message  # one plain sentence, not a chain


def test_two_keys_are_limited_independently_by_litellms_limiter(litellm: Stack) -> None:
    early_in_a_minute()
    slow, fast = create_key(litellm, "limited-slow", "--rpm", "2"), create_key(litellm, "limited-fast", "--rpm", "100")
    assert [ask(litellm, slow).status_code for _ in range(2)] == [200, 200]
    over = ask(litellm, slow)
    assert over.status_code == 429, over.text
    assert int(over.headers["retry-after"]) > 0
    assert over.json()["error"]["type"] == "throttling_error"  # the OpenAI shape, before any backend was asked
    assert [ask(litellm, fast).status_code for _ in range(4)] == [200] * 4  # the other key is not slowed


def test_a_key_may_use_only_its_models(litellm: Stack) -> None:
    key = create_key(litellm, "one-model", "--models", STACK_MODEL)
    assert ask(litellm, key).status_code == 200
    other = ask(litellm, key, model="smollm2-135m")
    assert other.status_code == 403 and "may not use the model" in other.json()["error"]["message"]


def test_usage_per_key_is_in_litellms_series_and_in_keys_list(litellm: Stack) -> None:
    key = create_key(litellm, "metered")
    for _ in range(3):
        assert ask(litellm, key).status_code == 200
    row = listed(litellm)["metered"]
    assert row["requests"] == 3 and row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
    assert row["last_used_at"] is not None
    raw = 'sum(litellm_proxy_total_requests_metric_total{api_key_alias="metered"})'  # by name: no series has the key
    panel = 'key:gateway_requests:rate5m{key="metered"}'  # the gateway dashboard's "Requests per key"
    deadline = time.monotonic() + 90
    while value(litellm, raw) < 3:  # LiteLLM creates the series at its first requests: rate() needs a later sample
        assert time.monotonic() < deadline, "Prometheus has no request count for the key after 90 s"
        time.sleep(2)
    for _ in range(2):
        assert ask(litellm, key).status_code == 200
    # LiteLLM keeps one series per backend (`model_id`), and rate() counts no increase in a series' first sample: if
    # the later requests all went to a backend the first ones missed, the rate stays 0. One more request each round
    # reaches a backend whose series already exists (two scrapes and a rule evaluation, on a busy host).
    deadline = time.monotonic() + 90
    while value(litellm, raw) < 5 or value(litellm, panel) <= 0:
        values = f"{raw} = {value(litellm, raw)}, {panel} = {value(litellm, panel)}"
        assert time.monotonic() < deadline, f"after 90 s: {values}"
        assert ask(litellm, key).status_code == 200
        time.sleep(2)


def test_sequential_traffic_spreads_over_both_backends_on_litellms_load_aware_routing(litellm: Stack) -> None:
    counts: collections.Counter[str] = collections.Counter()
    for _ in range(24):
        response = ask(litellm, litellm.key, max_tokens=1)
        assert response.status_code == 200, response.text
        counts[response.headers["x-litellm-model-id"]] += 1
    assert counts["vllm-cpu0"] >= 6 and counts["vllm-cpu1"] >= 6, counts
