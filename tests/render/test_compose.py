"""compose.yaml, checked by Compose itself (the compose-go loader validates against the Compose specification)
and then property by property on the model it resolves to."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from composetools import ROOT, compose_config, copy_project

from llmfleet.secrets import GENERATORS, SERVICE_SECRETS


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_project(tmp_path)


@pytest.fixture
def model(project: Path) -> dict:
    result = compose_config(project, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def vllm_services(model: dict) -> dict[str, dict]:
    return {name: s for name, s in model["services"].items() if name.startswith("vllm-")}


def test_compose_file_is_valid_against_the_compose_specification(project: Path) -> None:
    result = compose_config(project, "--quiet")
    assert result.returncode == 0, result.stderr


def test_one_vllm_service_per_gpu_pinned_by_device_id(model: dict) -> None:
    services = vllm_services(model)
    assert sorted(services) == ["vllm-gpu0", "vllm-gpu1"]
    for name, service in services.items():
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
        assert device["device_ids"] == [name.removeprefix("vllm-gpu")]


def test_vllm_services_share_one_hugging_face_cache(model: dict, project: Path) -> None:
    sources = set()
    for service in vllm_services(model).values():
        (mount,) = [v for v in service["volumes"] if v["target"] == "/root/.cache/huggingface"]
        sources.add(mount["source"])
    assert sources == {str(project / ".cache" / "huggingface")}  # ~ is the HOME the test gave Compose


def test_vllm_services_have_a_health_check_on_health(model: dict) -> None:
    for service in vllm_services(model).values():
        assert any("/health" in part for part in service["healthcheck"]["test"])
        assert service["shm_size"] or service.get("ipc") == "host"


def test_gateway_waits_for_every_backend_redis_and_the_key_database_to_be_healthy(model: dict) -> None:
    depends = model["services"]["gateway"]["depends_on"]
    assert {name: d["condition"] for name, d in depends.items()} == {
        name: "service_healthy" for name in [*vllm_services(model), "redis", "postgres"]
    }


def test_the_key_database_keeps_its_data_in_a_volume_and_answers_the_gateway_only(model: dict) -> None:
    postgres = model["services"]["postgres"]
    assert "ports" not in postgres  # never published: the gateway reaches it on the project's network
    assert [v["target"] for v in postgres["volumes"] if v["type"] == "volume"] == ["/var/lib/postgresql/data"]
    assert postgres["user"] == "999:999" and postgres["read_only"] and postgres["cap_drop"] == ["ALL"]
    assert "pg_isready" in postgres["healthcheck"]["test"]
    assert set(postgres["environment"]) == {"PGDATA", "POSTGRES_PASSWORD"}  # the password from its own file only
    gateway = model["services"]["gateway"]["environment"]
    assert "host=postgres" in gateway["LLMFLEET_KEYS_DSN"] and "password" not in gateway["LLMFLEET_KEYS_DSN"]
    assert gateway["POSTGRES_PASSWORD"] == postgres["environment"]["POSTGRES_PASSWORD"]


def test_the_gateway_gets_the_plans_worker_count_unless_env_sets_one(project: Path, model: dict) -> None:
    assert model["services"]["gateway"]["command"][-2:] == ["--num_workers", "2"]  # 2 x 32 sequences x 30 tokens/s
    result = compose_config(project, "--format", "json", env={"GATEWAY_WORKERS": "5"})
    assert json.loads(result.stdout)["services"]["gateway"]["command"][-2:] == ["--num_workers", "5"]


def test_redis_password_reaches_redis_and_the_gateway_from_the_generated_file_only(model: dict) -> None:
    for name in ("redis", "gateway"):
        assert model["services"][name]["environment"]["REDIS_PASSWORD"] == "r-test"
    assert model["services"]["gateway"]["environment"]["REDIS_HOST"] == "redis"
    assert "r-test" not in json.dumps(model["services"]["redis"]["entrypoint"])  # read at start, never an argument


def test_only_the_door_prometheus_and_grafana_are_published_and_on_loopback(model: dict) -> None:
    published = {name: s["ports"] for name, s in model["services"].items() if s.get("ports")}
    assert sorted(published) == ["door", "grafana", "prometheus"]  # LiteLLM (gateway) is reached through the door
    for ports in published.values():
        assert all(p["host_ip"] == "127.0.0.1" for p in ports)


def test_images_are_pinned(model: dict) -> None:
    for name, service in model["services"].items():
        image = service["image"]
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), f"{name}: {image}"


def test_grafana_gets_a_provisioned_prometheus_datasource(model: dict, project: Path) -> None:
    grafana = model["services"]["grafana"]
    (mount,) = [v for v in grafana["volumes"] if v["target"] == "/etc/grafana/provisioning"]
    datasource = yaml.safe_load((Path(mount["source"]) / "datasources" / "prometheus.yaml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"


def test_keys_reach_the_gateway_and_backends_from_the_generated_file_only(model: dict) -> None:
    for name in ["gateway", *vllm_services(model)]:
        environment = model["services"][name]["environment"]
        assert environment["VLLM_API_KEY"] == "sk-v"  # the value in the test's .env.secrets
    committed = "\n".join((ROOT / f).read_text() for f in ["compose.yaml", ".env", "gateway/compose.yaml"])
    assert "sk-" not in committed and "PASSWORD=" not in committed


def test_missing_secrets_fail_fast_naming_the_file(project: Path) -> None:
    shutil.rmtree(project / ".env.secrets.d")
    result = compose_config(project, "--quiet")
    assert result.returncode != 0
    assert ".env.secrets.d/" in result.stderr


def test_missing_image_setting_fails_saying_what_to_set(project: Path) -> None:
    env = project / ".env"
    env.write_text("\n".join(line for line in env.read_text().splitlines() if not line.startswith("VLLM_IMAGE=")))
    result = compose_config(project, "--quiet")
    assert result.returncode != 0
    assert "set VLLM_IMAGE in .env" in result.stderr


@pytest.mark.parametrize("files", [[], ["compose.yaml", "compose.cpu.yaml"]], ids=["gpu", "cpu"])
def test_each_service_holds_only_its_own_secrets(project: Path, files: list[str]) -> None:
    result = compose_config(project, *files, "--format", "json")
    assert result.returncode == 0, result.stderr
    for name, service in json.loads(result.stdout)["services"].items():
        held = set(service.get("environment") or {}) & set(GENERATORS)
        assert held == set(SERVICE_SECRETS.get("vllm" if name.startswith("vllm-") else name, ())), name


def test_no_service_keeps_a_capability_it_does_not_need_or_can_gain_privileges(model: dict) -> None:
    for name, service in model["services"].items():
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        # Only a vLLM server writing the host's Hugging Face cache as root gets one back.
        if service.get("cap_add"):
            assert service["cap_add"] == ["DAC_OVERRIDE"], name
            assert any(v["target"] == "/root/.cache/huggingface" for v in service["volumes"]), name


def test_the_gateway_door_and_redis_run_as_users_and_on_read_only_filesystems(model: dict) -> None:
    for name in ["gateway", "door", "redis", "prometheus"]:
        service = model["services"][name]
        assert service.get("read_only") is True, name
        assert service.get("user", "nobody") not in {"", "0", "root", "0:0"}, name
