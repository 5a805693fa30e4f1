"""`llmfleet doctor` on this machine, whatever it has: the expectations are read from the host itself (NVML, the
docker command, /proc/version), so the same tests hold on a GPU host and on this machine kind (no GPU, no engine)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from conftest import free_port
from modelfiles import SHARDS, hf_cache, truncate

from llmfleet import hardware

GPUS = hardware.inventory().gpus


@pytest.fixture
def doctor(cli, tmp_path):
    """`llmfleet doctor --json` with free ports, its own HF cache and an endpoint that refuses at once."""
    cli.env["HF_CACHE"] = str(tmp_path / "hf")
    cli.env["HF_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"
    cli.env["HF_HUB_OFFLINE"] = "0"
    for var in ("HF_HOME", "HF_HUB_CACHE"):
        cli.env.pop(var, None)

    def run() -> tuple[int, dict[str, dict]]:
        result = cli("doctor", "--json")
        checks = json.loads(result.stdout)
        return result.returncode, {c["name"]: c for c in checks}

    run.env = cli.env  # type: ignore[attr-defined]
    return run


def test_every_check_has_a_status_and_problems_have_a_fix(doctor):
    _, checks = doctor()
    assert {c["status"] for c in checks.values()} <= {"pass", "warn", "fail"}
    for c in checks.values():
        assert c["detail"]
        if c["status"] != "pass":
            assert c["fix"], c


def test_exit_code_is_1_exactly_when_a_check_fails(doctor):
    code, checks = doctor()
    assert code == (1 if any(c["status"] == "fail" for c in checks.values()) else 0)


@pytest.mark.skipif(bool(GPUS), reason="this host has a GPU")
def test_without_a_gpu_doctor_says_the_cpu_plan_runs_and_nothing_gpu_fails(doctor):
    code, checks = doctor()
    assert checks["NVIDIA driver"]["status"] == "warn"
    assert "runs the CPU plan" in checks["NVIDIA driver"]["detail"]
    assert checks["libcuda"]["status"] == "pass"
    assert "not needed without a GPU" in checks["libcuda"]["detail"]
    assert checks["plan vs hardware"]["status"] == "warn"  # fleet.yaml plans the seeds' two RTX 3060
    assert "runs the CPU plan instead" in checks["plan vs hardware"]["detail"]
    assert code == 0


@pytest.mark.skipif(not GPUS, reason="needs a GPU")
def test_with_a_gpu_doctor_lists_each_card(doctor):
    _, checks = doctor()
    for g in GPUS:
        assert g.name in checks["GPUs"]["detail"]
    assert checks["NVIDIA driver"]["detail"].startswith("driver ")


def test_docker_check_matches_what_the_docker_command_says(doctor):
    _, checks = doctor()
    docker = checks["Docker GPU runtime"]
    if shutil.which("docker") is None:
        assert "docker is not installed" in docker["detail"]
        return
    answers = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False).returncode == 0
    if answers:
        assert docker["detail"].startswith("engine answers")
    else:
        assert docker["status"] == "warn"
        assert "no Docker engine answers" in docker["detail"]


def test_wsl_check_matches_proc_version(doctor):
    _, checks = doctor()
    wsl = "microsoft" in Path("/proc/version").read_text().lower()
    assert (checks["WSL2"]["detail"] == "not WSL") is not wsl


def test_a_taken_port_fails_and_names_its_holder(doctor):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        doctor.env["GATEWAY_PORT"] = str(port)
        code, checks = doctor()
    assert checks["ports"]["status"] == "fail"
    assert f"{port} (GATEWAY_PORT) is taken by pid {os.getpid()}" in checks["ports"]["detail"]
    assert code == 1


def test_hf_home_pointing_elsewhere_is_a_warning(doctor, tmp_path):
    doctor.env["HF_HOME"] = str(tmp_path / "elsewhere")
    _, checks = doctor()
    assert checks["HF cache"]["status"] == "warn"
    assert "HF_HOME=" in checks["HF cache"]["detail"]
    assert "HF_CACHE" in checks["HF cache"]["fix"]


def test_hf_cache_check_names_an_incomplete_plan_model(doctor, tmp_path):
    cached = hf_cache(tmp_path / "hf")
    truncate(cached.blob(SHARDS[0]), by=1)
    _, checks = doctor()
    assert "Qwen2.5-7B-Instruct-AWQ: incomplete" in checks["HF cache"]["detail"]
    assert "llmfleet download Qwen2.5-7B-Instruct-AWQ" in checks["HF cache"]["fix"]


def test_unreachable_endpoint_warns_with_the_mirror(doctor):
    _, checks = doctor()
    source = checks["model source"]
    assert source["status"] == "warn"
    assert "cannot be reached" in source["detail"]
    assert "HF_ENDPOINT=https://hf-mirror.com" in source["fix"]


def test_offline_mode_does_not_contact_the_hub(doctor):
    doctor.env["HF_HUB_OFFLINE"] = "1"
    _, checks = doctor()
    assert checks["model source"]["status"] == "pass"
    assert "offline mode" in checks["model source"]["detail"]


def test_disk_check_reports_free_space_of_the_hf_cache(doctor, tmp_path):
    _, checks = doctor()
    free = shutil.disk_usage(tmp_path).free / 1024**3
    shown = float(checks["disk"]["detail"].split(" GiB free at ")[0])
    assert abs(shown - free) < 1.0  # others may write to this disk meanwhile
