"""compose.cpu.yaml: the same stack on a Docker host without GPUs, as Compose itself resolves it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from composetools import compose_config, copy_project

CPU = ("-f", "compose.yaml", "-f", "compose.cpu.yaml")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_project(tmp_path)


@pytest.fixture
def model(project: Path) -> dict:
    result = compose_config(project, *CPU, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def started_services(project: Path, profiles: str) -> list[str]:
    result = compose_config(project, *CPU, "--services", env={"COMPOSE_PROFILES": profiles})
    assert result.returncode == 0, result.stderr
    return sorted(result.stdout.split())


def test_cpu_variant_runs_the_cpu_plan_in_place_of_the_gpu_services(project: Path) -> None:
    assert started_services(project, "") == ["door", "gateway", "postgres", "prometheus", "redis", "router",
                                             "vllm-cpu0", "vllm-cpu1"]  # fmt: skip
    assert started_services(project, "dashboards") == ["door", "gateway", "grafana", "postgres", "prometheus", "redis",
                                                       "router", "vllm-cpu0", "vllm-cpu1"]  # fmt: skip


def test_cpu_variant_reserves_no_gpu(model: dict) -> None:
    for name, service in model["services"].items():
        assert "devices" not in json.dumps(service.get("deploy", {})), name


def test_gateway_waits_for_the_cpu_servers_and_routes_to_them(model: dict, project: Path) -> None:
    gateway = model["services"]["gateway"]
    assert sorted(gateway["depends_on"]) == ["postgres", "redis", "vllm-cpu0", "vllm-cpu1"]
    assert gateway["command"][-2:] == ["--num_workers", "1"]  # the CPU plan's token rate needs one
    models_mount = next(v["source"] for v in gateway["volumes"] if v["target"] == "/etc/litellm/models.yaml")
    text = Path(models_mount).read_text()
    assert "http://vllm-cpu0:8000/v1" in text and "http://vllm-cpu1:8000/v1" in text
    assert "model_name: smollm2-135m" in text


def test_router_sends_to_the_cpu_servers_with_the_key_from_its_environment(model: dict) -> None:
    router = model["services"]["router"]
    assert sorted(router["depends_on"]) == ["vllm-cpu0", "vllm-cpu1"]
    workers = router["command"][router["command"].index("--worker-urls") + 1 :][:2]
    assert workers == ["http://vllm-cpu0:8000", "http://vllm-cpu1:8000"]
    assert "--api-key" not in router["command"]  # the launcher adds it from VLLM_API_KEY: never on a command line
    assert router["entrypoint"][-1] == "/opt/llmfleet/router/launch.py"


def test_cpu_servers_mount_the_converted_model_read_only_from_the_cache(project: Path) -> None:
    """The real model is not in any image: each server mounts the folder `llmfleet setup` converted it into."""
    result = compose_config(project, *CPU, "--format", "json", env={"LLMFLEET_CACHE_DIR": "/srv/llmfleet-cache"})
    assert result.returncode == 0, result.stderr
    for name in ("vllm-cpu0", "vllm-cpu1"):
        service = json.loads(result.stdout)["services"][name]
        (volume,) = [v for v in service["volumes"] if v["target"].startswith("/opt/llmfleet/models/")]
        assert volume["source"] == "/srv/llmfleet-cache/models/smollm2-135m-0.1.2"
        assert volume["target"] == "/opt/llmfleet/models/smollm2-135m" and volume["read_only"]
        assert service["command"][service["command"].index("--model") + 1] == volume["target"]
        assert service["environment"]["HF_HUB_OFFLINE"] == "1"


def test_cpu_servers_keep_the_gpu_stacks_health_check_and_stay_unpublished(model: dict, project: Path) -> None:
    gpu_model = json.loads(compose_config(project, "--format", "json").stdout)
    gpu = gpu_model["services"]["vllm-gpu0"]
    for name in ("vllm-cpu0", "vllm-cpu1"):
        service = model["services"][name]
        assert service["healthcheck"]["test"] == gpu["healthcheck"]["test"]
        assert not service.get("ports")
        assert service["shm_size"]


def test_prometheus_scrapes_the_cpu_servers_by_service_name(model: dict) -> None:
    mount = next(v["source"] for v in model["services"]["prometheus"]["volumes"] if v["target"].endswith(".yml"))
    text = Path(mount).read_text()
    assert "vllm-cpu0:8000" in text and "vllm-cpu1:8000" in text and "vllm-gpu0" not in text
