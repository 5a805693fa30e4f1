"""`llmfleet tune`: measure the running fleet and write what it learns into its plan.

For each model the fleet serves, a sweep of closed-loop load through the gateway: `c` concurrent requests per server
at each level (the gateway spreads `c x servers` users over the model's identical servers). The highest level whose
TTFT p95 and ITL p95 stay within the objectives in .env (goodput) becomes the servers' `max_num_seqs`, written into
the plan with the date and the figures it came from.

A level above the servers' current `max_num_seqs` would measure vLLM's queue, not the card: the sweep stops there.
To try more, raise max_num_seqs in the plan, restart, and tune again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmfleet import output, paths, secrets
from llmfleet.errors import FleetError
from llmfleet.ops.loadtest import run
from llmfleet.ops.loadtest.options import load_options
from llmfleet.plan.schema import BUILTIN_PLANS, Plan, Server, dump_plan, load_plan
from llmfleet.run.state import State, running_state
from llmfleet.settings import Settings

TUNED_MARK = "# Tuned by `llmfleet tune`"  # the first line of the comment block a tune writes (a new tune replaces it)
DEFAULT_DURATION = "20s"


@dataclass(frozen=True)
class Level:
    """One step of a model's sweep, as the load test measured it."""

    per_server: int  # concurrent requests per server
    users: int  # closed-loop users in all (per_server x servers)
    ttft_p95_ms: float | None
    itl_p95_ms: float | None
    output_tokens_per_s: float
    error_rate: float
    meets_slos: bool


@dataclass(frozen=True)
class Finding:
    """What the sweep of one model found: the concurrency its servers serve within the objectives."""

    model: str
    servers: int
    before: int  # max_num_seqs in the plan the fleet runs
    chosen: int
    levels: tuple[Level, ...]


def levels_for(max_num_seqs: int, asked: tuple[int, ...] = ()) -> tuple[int, ...]:
    """Per-server concurrencies to sweep: the ones asked for, or powers of two, never above `max_num_seqs` (the
    server queues what is above it); the current value itself is always measured."""
    if asked:
        above = [c for c in asked if c > max_num_seqs]
        if above:
            raise FleetError(
                f"--levels {','.join(map(str, asked))} goes above the servers' max_num_seqs of {max_num_seqs}: "
                "vLLM would queue those requests, and the sweep would measure its queue.",
                f"sweep up to {max_num_seqs}, or raise max_num_seqs in the plan, restart, and tune again.",
                "--levels",
            )
        return asked
    powers = [2**i for i in range(max_num_seqs.bit_length()) if 2**i < max_num_seqs]
    return (*powers, max_num_seqs)


def parse_levels(text: str | None) -> tuple[int, ...]:
    return run.rising_counts(text, "--levels", "concurrencies per server")


def level_from_sweep(row: dict[str, Any], servers: int) -> Level:
    """A sweep row of the load test (loadtest.run._step_row) as a level per server."""
    return Level(
        per_server=row["users"] // servers,
        users=row["users"],
        ttft_p95_ms=row["ttft_p95_ms"],
        itl_p95_ms=row["itl_p95_ms"],
        output_tokens_per_s=row["output_tokens_per_s"],
        error_rate=row["error_rate"],
        meets_slos=row["meets_slos"],
    )


def choose(model: str, levels: tuple[Level, ...], error_budget: float) -> int:
    """The highest concurrency per server that meets every objective, below the first level that misses one: a
    level that passes above a failed one is noise, not capacity. Refuses a fleet that errors under load."""
    erring = [lv for lv in levels if lv.error_rate > error_budget]
    if erring:
        worst = max(erring, key=lambda lv: lv.error_rate)
        raise FleetError(
            f"{model} failed {worst.error_rate:.1%} of requests at {worst.per_server} per server "
            f"({worst.users} users), above the {error_budget:.1%} SLO_ERROR_RATE allows: a fleet that errors under "
            "load is not tuned, its figures would describe the errors.",
            "find the cause (`llmfleet status`, `llmfleet logs`, the load test's report), fix it, and tune again.",
            "llmfleet tune",
        )
    chosen = 0
    for level in levels:
        if not level.meets_slos:
            break
        chosen = level.per_server
    if chosen == 0:
        first = levels[0]
        raise FleetError(
            f"{model} misses the latency objectives even at {first.per_server} request(s) per server "
            f"(TTFT p95 {first.ttft_p95_ms} ms, ITL p95 {first.itl_p95_ms} ms).",
            "relax the objectives if they are stricter than your users need, or serve a smaller model or context.",
            ".env: SLO_TTFT_P95_SECONDS, SLO_ITL_P95_SECONDS",
        )
    return chosen


def tuned(plan: Plan, findings: list[Finding]) -> Plan:
    """The plan with each measured model's servers at the concurrency found for it."""
    chosen = {f.model: f.chosen for f in findings}
    servers = [_with_seqs(s, chosen[s.model]) if s.model in chosen else s for s in plan.servers]
    return plan.model_copy(update={"servers": servers})


def _with_seqs(server: Server, max_num_seqs: int) -> Server:
    return server.model_copy(update={"max_num_seqs": max_num_seqs})


def comment(findings: list[Finding], slo: tuple[float, float, float], when: datetime) -> str:
    """The comment block a tune leaves above the plan: when, against which objectives, and each level's figures."""
    ttft, itl, errors = slo
    lines = [
        f"{TUNED_MARK} on {when:%Y-%m-%d %H:%M} UTC, against TTFT p95 <= {ttft:g} s, ITL p95 <= {itl:g} s, "
        f"errors <= {errors:.1%}:"
    ]
    for f in findings:
        lines.append(f"#   {f.model} x{f.servers}: max_num_seqs {f.before} -> {f.chosen} per server")
        for lv in f.levels:
            verdict = "meets" if lv.meets_slos else "misses"
            lines.append(
                f"#     {lv.per_server:>4} per server: TTFT p95 {_ms(lv.ttft_p95_ms)}, ITL p95 {_ms(lv.itl_p95_ms)}, "
                f"{lv.output_tokens_per_s:g} tokens/s, errors {lv.error_rate:.1%}: {verdict} the objectives"
            )
    return "\n".join(lines) + "\n"


def _ms(value: float | None) -> str:
    return "no data" if value is None else f"{value:.0f} ms"


def plan_text(plan: Plan, findings: list[Finding], previous: str, slo: tuple[float, float, float]) -> str:
    """The tuned plan's file: the previous file's leading comments (without an earlier tune's block), this tune's
    block, then the plan."""
    header: list[str] = []
    in_old_block = False
    for line in previous.splitlines():
        if not line.startswith("#"):
            break
        if line.startswith(TUNED_MARK):
            in_old_block = True
            continue
        if in_old_block and line.startswith("#   "):
            continue
        in_old_block = False
        header.append(line)
    kept = "\n".join(header) + "\n" if header else ""
    return dump_plan(tuned(plan, findings), kept + comment(findings, slo, datetime.now(UTC)))


def write(path: Path, plan: Plan, findings: list[Finding], slo: tuple[float, float, float]) -> None:
    previous = path.read_text(encoding="utf-8") if path.is_file() else ""
    text = plan_text(plan, findings, previous, slo)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)  # a plan is never left half-written


def servers_of(plan: Plan) -> dict[str, tuple[int, int]]:
    """Model -> (servers that serve it, their max_num_seqs). Servers of one model are tuned together: they run on
    identical cards (the planner's groups)."""
    found: dict[str, tuple[int, int]] = {}
    for server in plan.servers:
        count, seqs = found.get(server.model, (0, server.max_num_seqs))
        found[server.model] = (count + 1, min(seqs, server.max_num_seqs))
    return found


def finding(model: str, servers: int, before: int, summary: dict[str, Any], error_budget: float) -> Finding:
    levels = tuple(level_from_sweep(row, servers) for row in summary["sweep"])
    return Finding(model, servers, before, choose(model, levels, error_budget), levels)


# --- the measurement: a sweep per model of the running fleet, the plan written --------------------------------


def plan_to_tune(state: State, root: Path, out: str | None) -> tuple[Plan, Path]:
    """The plan the fleet runs, and the file its tuned version goes to: that plan's own file, or for a built-in
    plan (which has none) fleet.NAME.yaml, unless --out names one."""
    label = state.plan
    if label.endswith(" (built-in)"):
        name = label.removesuffix(" (built-in)")
        return BUILTIN_PLANS[name](), Path(out) if out else root / f"fleet.{name}.yaml"
    source = Path(label) if Path(label).is_absolute() or Path(label).exists() else root / label
    return load_plan(source, label), Path(out) if out else source


def measure(settings: Settings, *, levels: str | None, duration: str, out: str | None,
            max_tokens: int) -> tuple[State, Path, list[Finding]]:  # fmt: skip
    """Sweep each model of the running fleet and write the tuned plan; return the fleet, the file and findings."""
    state = running_state(settings, "tune", "llmfleet tune")
    root = paths.project_root()
    running, path = plan_to_tune(state, root, out)
    asked = parse_levels(levels)
    key = secrets.read_secrets(settings.secrets_file)["LITELLM_MASTER_KEY"]
    results = root / "loadtest-results" / f"tune-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    findings = []
    for model, (servers, seqs) in servers_of(running).items():
        per_server = levels_for(seqs, asked)
        sweep = tuple(c * servers for c in per_server)
        options = load_options(
            settings, str(results / model), "tune", users=sweep[0], spawn_rate=float(sweep[-1]), duration=duration,
            scenario="short", language="both", model=model, max_tokens=max_tokens, stream=True, sweep=sweep,
            slo=(None, None, None),
        )  # fmt: skip
        output.info(f"Tuning {model} ({servers} servers): {', '.join(map(str, per_server))} requests per server.")
        summary = run.loadtest(options, key, root)
        findings.append(finding(model, servers, seqs, summary, options.slo.error_rate))
    objectives = (settings.SLO_TTFT_P95_SECONDS, settings.SLO_ITL_P95_SECONDS, settings.SLO_ERROR_RATE)
    write(path, running, findings, objectives)
    return state, path, findings
