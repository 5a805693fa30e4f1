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

from llmfleet.ops.doctor import docker as host_doctor
from llmfleet.ops.doctor.common import COMPOSE_FEATURES
from llmfleet.plan import hardware

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


# --- Docker Engine and Compose versions (fake version strings: no engine needed)


@pytest.mark.parametrize("version", ["20.10.24+dfsg1", "24.0.5", "27.5.1"])
def test_an_engine_before_28_is_warned_that_loopback_ports_reach_the_lan(version):
    check = host_doctor.docker_engine(version)
    assert check.status == "warn"
    assert "moby#45610" in check.detail and "28.3.3" in check.fix


def test_an_engine_between_28_0_and_28_3_3_is_warned_about_firewalld_reloads():
    check = host_doctor.docker_engine("28.1.1")
    assert check.status == "warn"
    assert "CVE-2025-54388" in check.detail and "moby#45610" not in check.detail


@pytest.mark.parametrize("version", ["28.3.3", "29.0.1", "v30.1.0"])
def test_an_engine_with_both_fixes_passes(version):
    assert host_doctor.docker_engine(version).status == "pass"


def test_no_engine_is_not_a_problem_for_the_engine_check():
    assert host_doctor.docker_engine(None).status == "pass"
    assert host_doctor.compose_plugin(None).status == "pass"


@pytest.mark.parametrize(
    ("version", "named"),
    [("2.20.2+ds1-0ubuntu1~22.04.1", "`env_file` with `required`"), ("v2.24.0", "`!override`"),
     ("2.19.1", "`include`")],
)  # fmt: skip
def test_a_compose_too_old_for_our_files_is_warned_with_what_it_cannot_read(version, named):
    check = host_doctor.compose_plugin(version)
    assert check.status == "warn"
    assert named in check.detail and "2.24.4" in check.fix


@pytest.mark.parametrize("version", ["2.24.4", "v2.40.3", "5.0.0"])
def test_a_compose_that_reads_our_files_passes(version):
    assert host_doctor.compose_plugin(version).status == "pass"


def test_the_compose_features_doctor_asks_for_are_the_ones_our_files_use():
    root = Path(__file__).resolve().parents[2]
    texts = {name: (root / name).read_text() for name in ("compose.yaml", "compose.cpu.yaml")}
    assert "\ninclude:" in texts["compose.yaml"]
    assert "required: true" in texts["compose.yaml"]
    assert "!override" in texts["compose.cpu.yaml"]
    assert [what.split("`")[1] for _, what in COMPOSE_FEATURES] == ["include", "env_file", "!override"]


def test_doctor_runs_the_engine_and_compose_checks(doctor):
    _, checks = doctor()
    assert {"Docker Engine", "Compose plugin"} <= set(checks)
