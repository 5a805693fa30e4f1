"""The door's router lane (GATEWAY_DATA_PLANE=router, the default): completions go from nginx to SMG to vLLM, with
no Python between the tokens and the client, and every guarantee of the door still holds, users' keys and their
limits too. On the session's stack; LiteLLM's lane has its own (test_litellm_lane.py)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from bad_input import HI, MODEL
from conftest import Stack
from dotenv import dotenv_values
from keytools import create_key, early_in_a_minute, listed, post, value

from llmfleet.run import procs
from llmfleet.settings import Settings

pytestmark = pytest.mark.stack


def kill(stack: Stack, *names: str) -> None:
    """SIGKILL these backends, every process of each (vLLM's API server and its engine)."""
    for service in stack.services():
        if service["name"] in names:
            for pid in procs.group_members(service["pid"], service["started"]):
                os.kill(pid, signal.SIGKILL)


def test_the_master_keys_completions_take_the_router_streamed_and_not(stack: Stack) -> None:
    whole = post(stack, {"model": MODEL, "messages": HI, "max_tokens": 4})
    assert whole.status_code == 200, whole.text
    assert whole.json()["usage"]["completion_tokens"] == 4
    # The backend guard names the server; LiteLLM's header is absent (it never saw the request), and the router's
    # own header, a backend's address, is hidden by the door.
    assert whole.headers["x-fleet-backend"] in ("vllm-cpu0", "vllm-cpu1")
    assert "x-litellm-model-id" not in whole.headers and "x-smg-routed-worker-id" not in whole.headers
    body = {"model": MODEL, "messages": HI, "max_tokens": 8, "stream": True, "ignore_eos": True}
    headers = {"Authorization": f"Bearer {stack.key}"}
    with httpx.stream("POST", stack.gateway + "/chat/completions", json=body, headers=headers, timeout=60) as response:
        assert response.status_code == 200
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert text, events


def test_the_router_spreads_sequential_requests_over_both_backends(stack: Stack) -> None:
    served = [post(stack, {"model": MODEL, "messages": HI, "max_tokens": 1}).headers["x-fleet-backend"]
              for _ in range(20)]  # fmt: skip
    assert set(served) == {"vllm-cpu0", "vllm-cpu1"}, served
    assert min(served.count("vllm-cpu0"), served.count("vllm-cpu1")) >= 3, served  # none starved


def test_without_a_valid_key_the_door_answers_401_before_the_router(stack: Stack) -> None:
    for key in ("", "sk-wrong"):
        response = post(stack, {"model": MODEL, "messages": HI}, key=key)
        assert response.status_code == 401, response.text
        assert response.json()["error"]["type"] == "authentication_error"


def test_the_router_itself_answers_only_with_the_backends_key(stack: Stack) -> None:
    router = f"http://127.0.0.1:{stack.cli.port('ROUTER_PORT')}/v1/chat/completions"
    body = {"model": MODEL, "messages": HI, "max_tokens": 1}
    assert httpx.post(router, json=body, timeout=30).status_code == 401
    wrong = {"Authorization": f"Bearer {stack.key}"}  # the master key is the door's, never the router's
    assert httpx.post(router, json=body, headers=wrong, timeout=30).status_code == 401
    argv = " ".join(" ".join(s["argv"]) for s in stack.services() if s["name"] == "router")
    assert stack.cli.secrets["VLLM_API_KEY"] not in argv  # the launcher reads it from the environment


def test_a_users_key_takes_the_router_too_and_two_keys_are_limited_independently(stack: Stack) -> None:
    early_in_a_minute()
    slow, fast = create_key(stack, "router-slow", "--rpm", "2"), create_key(stack, "router-fast", "--rpm", "100")
    ask = {"model": MODEL, "messages": HI, "max_tokens": 2}
    first = post(stack, ask, key=slow)
    assert first.status_code == 200, first.text
    assert "x-litellm-model-id" not in first.headers and first.headers["x-fleet-backend"]  # SMG's lane, not LiteLLM's
    assert post(stack, ask, key=slow).status_code == 200
    over = post(stack, ask, key=slow)
    assert over.status_code == 429, over.text  # the door's answer: no backend was asked
    assert 0 < int(over.headers["retry-after"]) <= 60
    error = over.json()["error"]
    assert error["type"] == "rate_limit_error" and "router-slow" in error["message"] and "rpm" in error["message"]
    assert [post(stack, ask, key=fast).status_code for _ in range(4)] == [200] * 4  # the other key is not slowed


def test_a_users_key_on_the_router_reaches_only_its_models(stack: Stack) -> None:
    """Its models are named to the backends' guard, which answers 403 for a served model outside them
    (test_backend_guard.py; this fleet serves one model); a model no backend serves is SMG's 404."""
    key = create_key(stack, "router-one-model", "--models", MODEL)
    mine = post(stack, {"model": MODEL, "messages": HI, "max_tokens": 2}, key=key)
    assert mine.status_code == 200 and "x-litellm-model-id" not in mine.headers, mine.text
    other = post(stack, {"model": "smollm2-135m", "messages": HI, "max_tokens": 2}, key=key)
    assert other.status_code == 404 and "smollm2-135m" in other.json()["error"]["message"], other.text


def test_a_users_tokens_on_the_router_are_counted_limited_and_in_prometheus(stack: Stack) -> None:
    key = create_key(stack, "router-metered", "--tpm", "20")
    early_in_a_minute()
    body = {"model": MODEL, "messages": HI, "max_tokens": 24, "stream": True, "ignore_eos": True}
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.stream("POST", stack.gateway + "/v1/chat/completions", json=body, headers=headers, timeout=60) as answer:
        assert answer.status_code == 200
        streamed = [line for line in answer.iter_lines() if line.startswith("data: ")]
    assert streamed[-1] == "data: [DONE]" and not any('"usage":{' in line for line in streamed)  # not asked for
    # The guard reported vLLM's usage to the gateway: the key's totals, and its tokens this minute.
    deadline = time.monotonic() + 10
    while (row := listed(stack)["router-metered"])["requests"] < 1:
        assert time.monotonic() < deadline, f"no usage recorded after 10 s: {row}"
        time.sleep(0.5)
    assert row["completion_tokens"] == 24 and row["prompt_tokens"] > 0
    refused = post(stack, {"model": MODEL, "messages": HI, "max_tokens": 2}, key=key)  # 24 tokens used of 20
    assert refused.status_code == 429 and "tpm" in refused.json()["error"]["message"], refused.text
    expr = 'sum(llmfleet_key_tokens_total{key="router-metered", kind="completion"})'  # the backends' own series
    deadline = time.monotonic() + 60
    while (seen := value(stack, expr)) < 24:
        assert time.monotonic() < deadline, f"Prometheus shows {seen} completion tokens of the key after 60 s"
        time.sleep(2)


def test_a_users_usage_on_the_router_reaches_the_gateway_dashboards_keys_row(stack: Stack) -> None:
    """The "Keys" row reads the recording rules, which add the backends' per-key series to LiteLLM's."""
    key = create_key(stack, "router-panel")
    ask = {"model": MODEL, "messages": HI, "max_tokens": 4}
    panels = (
        'key:gateway_requests:rate5m{key="router-panel"}',
        'key:gateway_completion_tokens:rate5m{key="router-panel"}',
    )
    deadline = time.monotonic() + 120
    # rate() needs a sample before and after an increase: the series appear with the first answer a backend counts,
    # so requests go on (one a round) until both rules show the key.
    while min(value(stack, panel) for panel in panels) <= 0:
        assert time.monotonic() < deadline, f"after 120 s: {[(p, value(stack, p)) for p in panels]}"
        assert post(stack, ask, key=key).status_code == 200
        time.sleep(3)


def test_prometheus_key_may_not_complete_on_the_router_lane(stack: Stack) -> None:
    key = (stack.cli.run_dir / "secrets" / "gateway.key").read_text().strip()  # scope metrics (keys.py)
    refused = post(stack, {"model": MODEL, "messages": HI, "max_tokens": 2}, key=key)
    assert refused.status_code == 403, refused.text


def test_only_the_backends_may_report_usage_and_only_in_its_shape(stack: Stack) -> None:
    litellm = f"http://127.0.0.1:{stack.cli.port('LITELLM_PORT')}/fleet/usage"
    report = {"usage": [{"key": "router-forged", "requests": 1, "prompt_tokens": 10**6, "completion_tokens": 0}]}
    assert httpx.post(litellm, json=report, timeout=30).status_code == 401  # no key
    user = create_key(stack, "router-forger")
    assert httpx.post(litellm, json=report, headers={"Authorization": f"Bearer {user}"}, timeout=30).status_code == 401
    backends = {"Authorization": f"Bearer {stack.cli.secrets['VLLM_API_KEY']}"}
    bad = httpx.post(litellm, json={"usage": [{"key": "x", "requests": -1}]}, headers=backends, timeout=30)
    assert bad.status_code == 400 and "usage" in bad.json()["error"]["message"]
    master = {"Authorization": f"Bearer {stack.key}"}
    through_door = httpx.post(stack.gateway + "/fleet/usage", json=report, headers=master, timeout=30)
    assert through_door.status_code == 404  # the door does not serve it


def test_the_router_is_scraped_by_prometheus_with_each_backend_named_as_the_plan_names_it(stack: Stack) -> None:
    """SMG labels a backend with its URL; the scrape gives it the `server` name the engines' series carry."""
    deadline = time.monotonic() + 60
    while True:
        result = httpx.get(stack.prometheus + "/api/v1/query", params={"query": 'up{job="router"}'}, timeout=10)
        values = [r["value"][1] for r in result.json()["data"]["result"]]
        result = httpx.get(stack.prometheus + "/api/v1/query", params={"query": "smg_worker_health"}, timeout=10)
        servers = sorted(r["metric"].get("server", "") for r in result.json()["data"]["result"])
        if values == ["1"] and servers == ["vllm-cpu0", "vllm-cpu1"]:
            return
        assert time.monotonic() < deadline, (values, servers)
        time.sleep(2)


def test_a_killed_backend_costs_no_request_through_the_router(stack: Stack) -> None:
    """Killed between requests: the router retries a request whose connection fails on the other backend, and
    takes the dead one out after two failed health checks."""
    kill(stack, "vllm-cpu1")
    try:
        answers = [post(stack, {"model": MODEL, "messages": HI, "max_tokens": 1}) for _ in range(12)]
        assert [a.status_code for a in answers] == [200] * 12, [a.text for a in answers if a.status_code != 200]
        assert {a.headers["x-fleet-backend"] for a in answers} == {"vllm-cpu0"}
    finally:
        stack.restore("vllm-cpu1")
    # Back in rotation once healthy.
    deadline = time.monotonic() + 30
    while post(stack, {"model": MODEL, "messages": HI, "max_tokens": 1}).headers.get("x-fleet-backend") != "vllm-cpu1":
        assert time.monotonic() < deadline, "vllm-cpu1 got no request within 30 s of its restart"


def test_every_backend_down_is_a_503_in_the_openai_shape_that_names_no_address(stack: Stack) -> None:
    """Right after the kill the router has not yet marked the backends down: it tries them and answers 500 with
    a backend's URL, which the door replaces; seconds later it answers its own 503 (no backend up)."""
    backends = [s["name"] for s in stack.services() if s["name"].startswith("vllm-")]
    kill(stack, *backends)
    try:
        answers = []
        for _ in range(8):  # over 5 s: before and after the router's health checks take them out
            answers.append(post(stack, {"model": MODEL, "messages": HI, "max_tokens": 1}))
            time.sleep(0.6)
    finally:
        stack.restore(*backends)
    assert [a.status_code for a in answers] == [503] * len(answers), [a.text for a in answers]
    for answer in answers:
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.json()["error"]["message"], answer.text
        assert "127.0.0.1" not in answer.text and "http://" not in answer.text, answer.text


def test_the_router_is_the_default_lane_wherever_it_is_set() -> None:
    root = Path(__file__).resolve().parents[1]
    assert dotenv_values(root / ".env")["GATEWAY_DATA_PLANE"] == "router"
    assert Settings.model_fields["GATEWAY_DATA_PLANE"].default == "router"
    assert "${GATEWAY_DATA_PLANE:-router}" in (root / "gateway" / "compose.yaml").read_text()
