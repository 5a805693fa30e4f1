"""The Compose stack, run for real on a Docker engine with the CPU variant and the stand-in images:
`llmfleet up --runner docker --plan cpu`, used through the official `openai` SDK, then `llmfleet down`.

Needs an engine (DOCKER_HOST) and `llmfleet images build`; `make test` provides both.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from conftest import ROOT, assert_door_logs_show_a_fresh_request, free_ports
from dotenv import dotenv_values

from llmfleet.secrets import GENERATORS

pytestmark = pytest.mark.compose

MODEL = "smollm2-135m"  # compose.cpu.yaml serves the CPU plan's real model, mounted from the host's cache
# requirements/: the vLLM CPU runtime's lock pins the model's wheel, and `up` converts it first when it must.
PROJECT_FILES = ["compose.yaml", "compose.cpu.yaml", ".env", "fleet.yaml", "gateway", "vllm", "router", "monitoring",
                 "images", "requirements"]  # fmt: skip


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=120)


@dataclass
class ComposeStack:
    root: Path
    env: dict[str, str]
    up_output: str

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "llmfleet", *args],
            cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    @property
    def project(self) -> str:
        return self.env["COMPOSE_PROJECT_NAME"]

    @property
    def key(self) -> str:
        return dotenv_values(self.root / ".env.secrets")["LITELLM_MASTER_KEY"] or ""

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.env['GATEWAY_PORT']}"

    @property
    def prometheus(self) -> str:
        return f"http://127.0.0.1:{self.env['PROMETHEUS_PORT']}"

    def container(self, service: str) -> str:
        return docker("ps", "-q", "--filter", f"label=com.docker.compose.project={self.project}",
                      "--filter", f"label=com.docker.compose.service={service}").stdout.strip()  # fmt: skip

    def sdk(self, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.gateway}/v1", api_key=key or self.key, max_retries=0, timeout=60)

    def query(self, promql: str) -> list[dict]:
        response = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": promql}, timeout=10)
        return response.json()["data"]["result"]

    def leftovers(self) -> dict[str, list[str]]:
        label = f"label=com.docker.compose.project={self.project}"
        return {
            kind: docker(*command, "--filter", label, "-q").stdout.split()
            for kind, command in {"containers": ["ps", "-a"], "networks": ["network", "ls"],
                                  "volumes": ["volume", "ls"]}.items()
        }  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    if not shutil.which("docker") or docker("info", check=False).returncode != 0:
        pytest.fail("no Docker engine answers: run these tests through `make test` (it starts one), or set DOCKER_HOST")
    root = tmp_path_factory.mktemp("compose")
    for name in PROJECT_FILES:
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, root / name)
    gateway_port, prometheus_port = free_ports(2)
    env = {
        **os.environ,
        "LLMFLEET_ROOT": str(root),
        "LLMFLEET_RUN_DIR": str(root / "run"),
        "COMPOSE_PROJECT_NAME": f"llmfleet-test-{uuid.uuid4().hex[:8]}",  # never the user's own stack
        "GATEWAY_PORT": str(gateway_port),
        "PROMETHEUS_PORT": str(prometheus_port),
        "COMPOSE_PROFILES": "",  # Grafana has no image here
        "RUNNER": "docker",
    }
    env.pop("LLMFLEET_SECRETS_FILE", None)
    stack = ComposeStack(root, env, "")
    try:
        up = stack.cli("up", "--plan", "cpu", timeout=900)
        assert up.returncode == 0, f"llmfleet up failed:\n{up.stdout}\n{up.stderr}"
        stack.up_output = up.stdout + up.stderr
        yield stack
    finally:
        stack.cli("down", "--volumes", timeout=300)


def test_up_says_it_chose_docker_and_uses_the_stand_ins(stack: ComposeStack) -> None:
    assert "Runner: docker" in stack.up_output
    assert "docker runner" in stack.up_output
    assert f"{stack.gateway}/v1" in stack.up_output


def test_models_chat_and_stream_with_usage(stack: ComposeStack) -> None:
    client = stack.sdk()
    assert [m.id for m in client.models.list()] == [MODEL]
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=8)
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=8, stream=True,
        stream_options={"include_usage": True},
    ))  # fmt: skip
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def served(stack: ComposeStack, service: str) -> float:
    """Requests the server has finished since it started, read inside its container (it publishes no port)."""
    script = (
        "import re, urllib.request as u; t = u.urlopen('http://127.0.0.1:8000/metrics').read().decode(); "
        "print(sum(float(v) for v in re.findall(r'^vllm:request_success_total\\{[^}]*\\} (\\S+)$', t, re.M)))"
    )
    return float(docker("exec", stack.container(service), "python3", "-c", script).stdout)


def test_both_vllm_containers_served_requests(stack: ComposeStack) -> None:
    client = stack.sdk()
    for _ in range(20):  # random routing: both are chosen with probability 1 - 2^-19
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert served(stack, "vllm-cpu0") > 0 and served(stack, "vllm-cpu1") > 0


@pytest.mark.parametrize("header", [None, "Bearer sk-wrong-key"])
def test_gateway_answers_401_without_a_valid_key(stack: ComposeStack, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    for route in ("/v1/models", "/metrics/"):
        assert httpx.get(stack.gateway + route, headers=headers, timeout=10).status_code == 401


def test_prometheus_sees_every_target_up_by_service_name(stack: ComposeStack) -> None:
    deadline = time.monotonic() + 60
    while True:
        targets = {r["metric"]["instance"]: r["value"][1] for r in stack.query("up")}
        if targets and set(targets.values()) == {"1"} and len(targets) == 5:
            break
        assert time.monotonic() < deadline, f"targets not all up after 60 s: {targets}"
        time.sleep(2)
    assert sorted(targets) == ["gateway:4000", "localhost:9090", "router:4003", "vllm-cpu0:8000", "vllm-cpu1:8000"]


def test_no_vllm_port_is_reachable_from_the_host(stack: ComposeStack) -> None:
    for service in ("vllm-cpu0", "vllm-cpu1"):
        inspect = json.loads(docker("inspect", stack.container(service)).stdout)[0]
        assert not any(inspect["NetworkSettings"]["Ports"].get("8000/tcp") or [])  # nothing published
        # Even at its address on the Compose network, it serves nobody without the key only the gateway has.
        address = next(iter(inspect["NetworkSettings"]["Networks"].values()))["IPAddress"]
        assert httpx.get(f"http://{address}:8000/v1/models", timeout=10).status_code == 401


SECRET_NAMES = set(GENERATORS)  # every secret llmfleet generates


def test_containers_hold_only_their_own_secrets_and_run_without_root(stack: ComposeStack) -> None:
    def held(service: str) -> set[str]:
        env = docker("exec", stack.container(service), "env").stdout.splitlines()
        return {line.split("=", 1)[0] for line in env} & SECRET_NAMES

    assert held("vllm-cpu0") == held("vllm-cpu1") == {"VLLM_API_KEY"}
    assert held("gateway") == {"LITELLM_MASTER_KEY", "VLLM_API_KEY", "REDIS_PASSWORD", "POSTGRES_PASSWORD",
                               "GATEWAY_METRICS_KEY"}  # fmt: skip
    assert held("redis") == {"REDIS_PASSWORD"}
    assert held("postgres") == {"POSTGRES_PASSWORD"}
    assert held("prometheus") == {"GATEWAY_METRICS_KEY"}  # it reads the gateway's metrics, and nothing else
    assert held("door") == set()
    assert held("router") == {"VLLM_API_KEY"}  # it asks the backends with it; the door sends it only on its lane
    for service in ("gateway", "door", "router", "redis", "prometheus", "postgres"):
        uid = docker("exec", stack.container(service), "id", "-u").stdout.strip()
        assert uid not in ("", "0"), f"{service} runs as root"
        status = json.loads(docker("inspect", stack.container(service)).stdout)[0]["HostConfig"]
        assert status["ReadonlyRootfs"] and status["CapDrop"] == ["ALL"], service


def test_a_crashed_vllm_container_is_restarted_and_requests_keep_succeeding(stack: ComposeStack) -> None:
    client = stack.sdk()
    failures: list[str] = []
    done = threading.Event()

    def steady_load() -> None:
        while not done.is_set():
            try:
                client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=4)
            except openai.OpenAIError as e:
                failures.append(repr(e))

    workers = [threading.Thread(target=steady_load) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(3)
        victim = stack.container("vllm-cpu0")
        pid = int(docker("inspect", "--format", "{{.State.Pid}}", victim).stdout)
        os.kill(pid, signal.SIGKILL)  # a crash: `docker kill` would count as a manual stop and not be restarted
        time.sleep(15)
    finally:
        done.set()
        for worker in workers:
            worker.join(timeout=120)
    assert failures == [], f"{len(failures)} requests failed while a backend crashed: {failures[:3]}"

    deadline = time.monotonic() + 240
    while docker("inspect", "--format", "{{.State.Health.Status}}", victim).stdout.strip() != "healthy":
        assert time.monotonic() < deadline, "vllm-cpu0 did not come back healthy within 240 s"
        time.sleep(3)
    assert int(docker("inspect", "--format", "{{.RestartCount}}", victim).stdout) >= 1

    deadline = time.monotonic() + 90  # the gateway's cooldown (30 s) must pass before it is tried again
    while served(stack, "vllm-cpu0") == 0:
        assert time.monotonic() < deadline, "the restarted vllm-cpu0 got no traffic within 90 s"
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=2)


def test_a_users_key_works_at_the_door_survives_down_and_up_and_is_refused_once_revoked(stack: ComposeStack) -> None:
    made = stack.cli("keys", "create", "compose-user", "--rpm", "600", "--json")
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)["key"]
    hi = [{"role": "user", "content": "hi"}]
    assert stack.sdk(key).chat.completions.create(model=MODEL, messages=hi, max_tokens=2).choices
    admin = httpx.get(f"{stack.gateway}/key/list", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert admin.status_code == 403, admin.text  # a user's key is no admin key
    for command in (("down",), ("up", "--plan", "cpu")):  # the keys are in the keys-data volume, which down keeps
        result = stack.cli(*command, timeout=900)
        assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    assert stack.sdk(key).chat.completions.create(model=MODEL, messages=hi, max_tokens=2).choices
    (row,) = [r for r in json.loads(stack.cli("keys", "list", "--json").stdout) if r["name"] == "compose-user"]
    assert row["rpm"] == 600 and row["requests"] >= 1  # usage recorded before the restart survived it
    assert stack.cli("keys", "revoke", "compose-user").returncode == 0
    deadline = time.monotonic() + 25  # README: refused within 20 s (the door's cache, then the gateway's)
    while True:
        try:
            stack.sdk(key).chat.completions.create(model=MODEL, messages=hi, max_tokens=2)
        except openai.AuthenticationError:
            break
        assert time.monotonic() < deadline, "the revoked key still worked after 25 s"
        time.sleep(2)


def test_status_and_logs_work_for_the_docker_runner(stack: ComposeStack) -> None:
    status = stack.cli("status", "--json")
    rows = {r["name"]: r for r in json.loads(status.stdout)}
    assert sorted(rows) == ["door", "gateway", "postgres", "prometheus", "redis", "router", "vllm-cpu0", "vllm-cpu1"]
    assert rows["door"]["port"] == int(stack.env["GATEWAY_PORT"])  # the only published port of the gateway
    assert rows["gateway"]["port"] is None
    assert_door_logs_show_a_fresh_request(stack.cli, stack.gateway)


def test_down_keeps_the_history_and_down_volumes_removes_it(stack: ComposeStack) -> None:
    # Last in this module: the fixture's own `down` then finds nothing left.
    result = stack.cli("down", timeout=300)
    assert result.returncode == 0, result.stderr
    left = stack.leftovers()
    assert left["containers"] == [] and left["networks"] == []
    assert len(left["volumes"]) == 2  # prometheus-data and keys-data (Grafana's profile is off here)
    assert stack.cli("status").returncode == 1
    purge = stack.cli("down", "--volumes", timeout=300)
    assert purge.returncode == 0, purge.stderr
    assert all(volume in purge.stdout + purge.stderr for volume in left["volumes"])  # said what it removes
    assert stack.leftovers() == {"containers": [], "networks": [], "volumes": []}
