"""The real CPU stack, booted with `llmfleet up --plan cpu`, used through the official `openai` SDK."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import httpx
import openai
import pytest
from conftest import (
    STACK_MODEL,
    STACK_PLAN,
    Stack,
    assert_door_logs_show_a_fresh_request,
    assert_logged_kv_cache_is_the_planners_estimate,
)

from llmfleet.run import procs

pytestmark = pytest.mark.stack

MODEL = STACK_MODEL


def sdk(stack: Stack, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.gateway}/v1", api_key=key or stack.key, max_retries=0, timeout=60)


def test_up_prints_endpoint_key_location_and_example_without_the_key(stack: Stack) -> None:
    out = stack.up_output
    assert f"{stack.gateway}/v1" in out
    assert f"LITELLM_MASTER_KEY in {stack.cli.env['LLMFLEET_SECRETS_FILE']}" in out
    assert "curl" in out and "/v1/chat/completions" in out
    assert "synthetic smoke-test model" in out
    assert stack.key not in out


def test_models_lists_the_served_model(stack: Stack) -> None:
    assert [m.id for m in sdk(stack).models.list()] == [MODEL]


def test_chat_completion_answers(stack: Stack) -> None:
    reply = sdk(stack).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "你好, say hello"}], max_tokens=8
    )
    assert reply.choices[0].message.role == "assistant"
    assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 8


def test_streamed_chat_ends_with_usage(stack: Stack) -> None:
    stream = sdk(stack).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count to ten."}],
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert text
    assert usage is not None and usage.completion_tokens > 0 and usage.prompt_tokens > 0


def requests_served(stack: Stack, backend: str) -> float:
    metrics = httpx.get(f"{stack.backend(backend)}/metrics", timeout=10).text
    return sum(float(v) for v in re.findall(r"^vllm:request_success_total\{[^}]*\} (\S+)$", metrics, re.M))


def test_both_backends_served_requests(stack: Stack) -> None:
    client = sdk(stack)
    for _ in range(20):  # random routing: both are chosen with probability 1 - 2^-19
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert requests_served(stack, "vllm-cpu0") > 0
    assert requests_served(stack, "vllm-cpu1") > 0


@pytest.mark.parametrize("route", ["/v1/models", "/v1/chat/completions", "/metrics/", "/health"])
@pytest.mark.parametrize("header", [None, "Bearer sk-wrong-key", "Basic dXNlcjpwYXNz"])
def test_gateway_answers_401_without_a_valid_key(stack: Stack, route: str, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    if route == "/v1/chat/completions":
        response = httpx.post(stack.gateway + route, json=body, headers=headers, timeout=10)
    else:
        response = httpx.get(stack.gateway + route, headers=headers, timeout=10)
    assert response.status_code == 401, response.text
    assert "LITELLM_MASTER_KEY" in response.text  # the message says what to send


def test_sdk_with_a_wrong_key_gets_an_authentication_error(stack: Stack) -> None:
    with pytest.raises(openai.AuthenticationError):
        sdk(stack, key="sk-not-the-key").models.list()


def listening_addresses(port: int) -> set[str]:
    """Local addresses listening on `port`, from the kernel's socket table."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:
                found.add(address)
    return found


def test_backends_listen_on_loopback_and_refuse_requests_without_the_backend_key(stack: Stack) -> None:
    for name in ("vllm-cpu0", "vllm-cpu1"):
        port = next(s["port"] for s in stack.state["services"] if s["name"] == name)
        assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1, and nothing else
        assert httpx.get(f"{stack.backend(name)}/v1/models", timeout=10).status_code == 401
        wrong = {"Authorization": f"Bearer {stack.key}"}  # the gateway's key is not the backends'
        assert httpx.get(f"{stack.backend(name)}/v1/models", headers=wrong, timeout=10).status_code == 401


def test_prometheus_sees_every_target_up(stack: Stack) -> None:
    deadline = time.monotonic() + 60
    while True:
        result = httpx.get(f"{stack.prometheus}/api/v1/query", params={"query": "up"}, timeout=10).json()
        targets = {(r["metric"]["job"], r["metric"]["instance"]): r["value"][1] for r in result["data"]["result"]}
        jobs = sorted(job for job, _ in targets)
        if jobs == ["gateway", "prometheus", "router", "vllm", "vllm"] and set(targets.values()) == {"1"}:
            break
        assert time.monotonic() < deadline, f"targets not all up after 60 s: {targets}"
        time.sleep(2)


def test_vllm_series_carry_their_server_and_model_group(stack: Stack) -> None:
    query = "count by (server, model_group, gpu_name) (vllm:num_requests_running)"
    result = httpx.get(f"{stack.prometheus}/api/v1/query", params={"query": query}, timeout=10).json()
    labels = sorted((r["metric"]["server"], r["metric"]["model_group"]) for r in result["data"]["result"])
    assert labels == [("vllm-cpu0", MODEL), ("vllm-cpu1", MODEL)]


def test_second_up_says_so_and_changes_nothing(stack: Stack) -> None:
    before = stack.cli.state()
    again = stack.cli("up", "--plan", STACK_PLAN)
    assert again.returncode == 0
    assert "already running" in again.stdout
    assert stack.cli.state() == before


def test_status_json_reports_every_service_healthy(stack: Stack) -> None:
    result = stack.cli("status", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == ["vllm-cpu0", "vllm-cpu1", "redis", "postgres", "gateway", "router", "door",
                                         "prometheus"]  # fmt: skip
    assert all(r["healthy"] and r["pid"] > 0 and r["port"] > 0 for r in rows)


def test_logs_shows_one_service_and_names_the_known_ones(stack: Stack) -> None:
    assert_door_logs_show_a_fresh_request(stack.cli, stack.gateway)
    unknown = stack.cli("logs", "no-such-service")
    assert unknown.returncode == 1
    assert "vllm-cpu0" in unknown.stderr and "Traceback" not in unknown.stderr


def test_status_names_a_stopped_service_and_restart_brings_it_back(stack: Stack) -> None:
    """`status` tells a crashed server from a healthy one; `llmfleet restart` starts it as `up` did."""
    victim = next(s for s in stack.services() if s["name"] == "vllm-cpu1")
    for pid in procs.group_members(victim["pid"], victim["started"]):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while procs.group_members(victim["pid"], victim["started"]):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    rows = {r["name"]: r for r in json.loads(stack.cli("status", "--json").stdout)}
    assert rows["vllm-cpu1"]["pid"] is None and not rows["vllm-cpu1"]["healthy"]
    assert stack.cli("status").returncode == 1
    restarted = stack.cli("restart", "vllm-cpu1", timeout=600)
    assert restarted.returncode == 0, restarted.stderr
    rows = {r["name"]: r for r in json.loads(stack.cli("status", "--json").stdout)}
    assert rows["vllm-cpu1"]["healthy"] and rows["vllm-cpu1"]["pid"] != victim["pid"]


def test_each_servers_kv_cache_is_the_planners_estimate_within_1_percent(stack: Stack) -> None:
    logs = [Path(s["log"]) for s in stack.services() if s["name"].startswith("vllm-")]
    assert_logged_kv_cache_is_the_planners_estimate(logs, MODEL)
