"""Which plan and which runner `up` and `setup` use: what was asked for, else what this host has."""

from __future__ import annotations

from pathlib import Path

from llmfleet import output
from llmfleet.errors import FleetError
from llmfleet.plan import hardware, planner
from llmfleet.plan.schema import BUILTIN_PLANS, CPU_MODEL, Plan, cpu_plan, load_plan, plan_path
from llmfleet.run.docker import lifecycle as dockerrun


def choose_plan(plan: str | None) -> tuple[Plan, str]:
    """`--plan cpu` (or cpu-tiny), `--plan FILE`, or: fleet.yaml where there are GPUs, the CPU plan where there are
    none."""
    if plan in BUILTIN_PLANS:
        return BUILTIN_PLANS[plan](), f"{plan} (built-in)"
    if plan:
        return load_plan(Path(plan), plan), plan
    found = hardware.inventory()
    if found.gpus:
        chosen = load_plan()
        planner.check_host(chosen, found.gpus, plan_path().name)  # a plan for other cards fails here, not in vLLM
        return chosen, str(plan_path().name)
    output.info(
        f"No NVIDIA GPU here ({found.why_none}): running the built-in CPU plan, two vLLM CPU servers with "
        f"{CPU_MODEL} (SmolLM2 135M Instruct)."
    )
    return cpu_plan(), "cpu (built-in)"


def choose_runner(asked: str) -> tuple[str, str]:
    """The runner and why: Docker when asked or when an engine answers, native otherwise."""
    if asked == "native":
        return "native", "asked for"
    answers, why = dockerrun.engine_answers()
    if asked == "docker":
        if not answers:
            raise FleetError(
                f"the docker runner was asked for, but {why}.",
                "start Docker (or point DOCKER_HOST at a running engine), or use `--runner native`.",
                "--runner docker",
            )
        return "docker", why
    if asked == "auto":
        return ("docker", why) if answers else ("native", f"{why}; local processes on 127.0.0.1")
    raise FleetError(f"runner {asked!r} is unknown.", "use auto, docker or native.", "--runner / .env: RUNNER")
