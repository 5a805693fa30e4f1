"""What llmfleet shows a person: tables and summaries of results. `--json` is one of its modes, not a second code
path.

It writes through output.py (results to stdout; progress, warnings and errors to stderr, so `llmfleet status --json
| jq` stays clean), and may import any module's types: no core module imports it (core modules report progress
through output.py or a callback), so no import cycle runs through here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from llmfleet import output
from llmfleet.output import out, phase_text
from llmfleet.plan import synthetic

if TYPE_CHECKING:
    from llmfleet.models.listing import CatalogRow
    from llmfleet.models.verify import Result
    from llmfleet.ops.bench import Cell, Comparison
    from llmfleet.ops.doctor.common import Check
    from llmfleet.ops.drill import Figure
    from llmfleet.ops.tune import Finding
    from llmfleet.plan.description import Description
    from llmfleet.run.state import ServiceStatus, State
    from llmfleet.settings import Settings


def _plan_notice(state: State) -> str:
    return f"\n  [yellow]{synthetic.NOTICE}[/]" if synthetic.NAME in state.models else ""


def ready(state: State, settings: Settings, seconds: float) -> None:
    base = f"http://127.0.0.1:{settings.GATEWAY_PORT}"
    model = state.models[0]
    secrets = settings.secrets_file
    headline = f"({state.runner} runner, plan: {state.plan}), answering in {seconds:.0f} s."
    out.print("[bold green]llmfleet is up[/] " + headline + _plan_notice(state))
    out.print(f"  gateway     {base}/v1   models: {', '.join(state.models)}")
    out.print(f"  key         LITELLM_MASTER_KEY in {secrets}")
    if state.runner == "docker" or any(s.name == "prometheus" for s in state.services):
        out.print(f"  prometheus  http://127.0.0.1:{settings.PROMETHEUS_PORT}")
    if "dashboards" in state.compose_env.get("COMPOSE_PROFILES", "").split(","):
        out.print(
            f"  grafana     http://127.0.0.1:{settings.GRAFANA_PORT}   (admin, GF_SECURITY_ADMIN_PASSWORD in {secrets})"
        )
    where = "llmfleet logs [SERVICE]" if state.runner == "docker" else f"{settings.run_dir / 'logs'}"
    out.print(f"  logs        {where}")
    out.print("  try:")
    out.print(
        f"    curl {base}/v1/chat/completions \\\n"
        f'      -H "Authorization: Bearer $(grep ^LITELLM_MASTER_KEY= {secrets} | cut -d= -f2-)" \\\n'
        f"      -H 'Content-Type: application/json' \\\n"
        f'      -d \'{{"model": "{model}", "messages": [{{"role": "user", "content": "Hello"}}]}}\'',
        markup=False,
    )
    out.print("  stop:       make down   (llmfleet down)")


def already_running(names: list[str]) -> None:
    out.print(f"llmfleet is already running ({', '.join(names)}); nothing was changed. `llmfleet status` shows its "
              "health, `llmfleet down` stops it.")  # fmt: skip


def stopped(names: list[str]) -> None:
    if names:
        out.print(f"Stopped {', '.join(names)}.")
    else:
        out.print("Nothing was running.")


def status(rows: list[ServiceStatus], as_json: bool) -> None:
    if as_json:
        output.json([
            {"name": r.name, "pid": r.pid, "port": r.port, "healthy": r.healthy,
             "phase": r.phase.name if r.phase else ("ready" if r.healthy else None)}
            for r in rows
        ])  # fmt: skip
        return
    if not rows:
        out.print("llmfleet is not running (`llmfleet up` starts it).")
        return
    table = output.table("service", "pid", "port", "state")
    for r in rows:
        if r.running and not r.healthy and r.phase is not None:
            table.add_row(r.name, str(r.pid or "-"), str(r.port or "-"), phase_text(r.phase))
            continue
        state = (
            "[green]healthy[/]"
            if r.healthy
            else ("[yellow]running, not healthy[/]" if r.running else "[red]stopped[/]")
        )
        table.add_row(r.name, str(r.pid or "-"), str(r.port or "-"), state)
    out.print(table)


# Flags every server gets; the plan table shows only the ones that differ between models.
_COMMON_FLAGS = {"--model", "--served-model-name", "--host", "--port", "--max-model-len", "--max-num-seqs",
                 "--disable-uvicorn-access-log", "--gpu-memory-utilization", "--tensor-parallel-size"}  # fmt: skip


def plan(hosts: dict[str, Description], as_json: bool, explain: bool = False) -> None:
    """`llmfleet plan`: one described host (plan/description.py), or node pools keyed by name; `explain`: every layout
    weighed, one line each."""
    if as_json:
        output.json(hosts[""].to_json() if list(hosts) == [""] else {p: h.to_json() for p, h in hosts.items()})
        return
    for pool, host in hosts.items():
        _plan_table(host, pool, explain)


def _plan_table(host: Description, pool: str, explain: bool = False) -> None:
    title = f"Plan for {host.host}" + (f", node pool {pool}" if pool else "")
    if host.device == "cpu":
        out.print(f"[bold]{title}[/]: no GPU.")
        table = output.table("server", "model", "context", "concurrent seqs", "flags", title_justify="left")
        for name, server in host.plan.named_servers():
            table.add_row(name, server.model, f"{server.max_model_len:,}", str(server.max_num_seqs), "-")
        out.print(table)
    else:
        table = output.table("GPU", "card", "model", "weights", "KV cache", "context", "full-length\nat once",
                      "max seqs", "flags", title=title, title_justify="left")  # fmt: skip
        for gpu in host.gpus:
            name = gpu.name.removeprefix("NVIDIA ").removeprefix("GeForce ")
            card = f"{gpu.memory_gib:g} GiB" if name.endswith(" GiB GPU") else f"{name}\n{gpu.memory_gib:g} GiB"
            serving = gpu.serving
            if serving is None or serving.budget is None:
                table.add_row(str(gpu.index), card, "[dim](not used)[/]", "", "", "", "", "", "")
                continue
            budget = serving.budget
            tp = f" (TP {serving.tensor_parallel_size})" if serving.tensor_parallel_size > 1 else ""
            table.add_row(
                str(gpu.index),
                card,
                f"{serving.model}{tp}\n[dim]{serving.kernel}[/]",
                f"{budget.weights_gib:.1f} GiB",
                f"{budget.kv_cache_gib:.1f} GiB\n{budget.kv_tokens:,} tok",
                f"{serving.max_model_len:,}",
                f"{budget.full_length_sequences:.1f}",
                str(serving.max_num_seqs),
                _model_flags(serving.vllm_args),
            )
        out.print(table)
    groups = "; ".join(f"{model}: {', '.join(servers)}" for model, servers in host.model_groups.items())
    out.print(f"Model groups (one gateway endpoint each): {groups}")
    for comparison in host.layouts:
        gpus = ", ".join(str(c.index) for c in comparison.cards)
        lines = comparison.lines()
        shown = lines if explain else [line for line, x in zip(lines, comparison.layouts, strict=True)
                                       if x is comparison.chosen]  # fmt: skip
        out.print(f"Layout of {comparison.model} on GPU {gpus} ({comparison.basis()}):", markup=False)
        for line in shown:
            out.print(f"  {line}", markup=False)
    if host.node_selector is not None:  # a node pool: the node labels its pods require
        ops = {"In": "in", "NotIn": "not in", "Gt": ">", "Lt": "<", "Exists": "exists", "DoesNotExist": "absent"}
        labels = [f"{r['key']} {ops[str(r['operator'])]} {', '.join(r.get('values', []))}".rstrip()  # type: ignore[arg-type]
                  for r in host.node_selector]  # fmt: skip
        out.print(f"Nodes: {'; '.join(labels) or 'any'}", markup=False)
    for note in host.notes:
        out.print(f"[yellow]note:[/] {note}")


def _model_flags(args: list[str]) -> str:
    flags: list[str] = []
    for arg in args:
        if arg.startswith("--"):
            flags.append(arg)
        elif flags:
            flags[-1] += f" {arg}"
    short = {"--enable-prefix-caching": "prefix caching", "--tool-call-parser": "tools:",
             "--reasoning-parser": "reasoning:", "--limit-mm-per-prompt": "per prompt:"}  # fmt: skip
    shown = []
    for flag in flags:
        name, _, value = flag.partition(" ")
        if name in _COMMON_FLAGS or name == "--enable-auto-tool-choice":  # implied by a tool parser
            continue
        shown.append(f"{short[name]} {value}".strip() if name in short else flag)
    return "\n".join(shown)


# --- models and diagnosis: verify, download --list, doctor -----------------------------------------------------


def verified(label: str, result: Result) -> None:
    output.result(result.summary(label))


def model_list(rows: list[CatalogRow], as_json: bool) -> None:
    if as_json:
        output.json(rows)
        return
    table = output.table("model", "repo", "weights", "fits (planner's budget)", "in the cache")
    for r in rows:
        table.add_row(r.name, r.repo or "-", f"{r.weights_gib:.1f} GiB", escape(r.fits), escape(r.cached))
    out.print(table)


_STATUS_STYLE = {"pass": "[green]pass[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]fail[/]"}


def doctor(checks: list[Check], as_json: bool) -> None:
    if as_json:
        output.json(checks)
        return
    table = output.table("check", "status", "what was seen / what to do", show_lines=True)
    for c in checks:
        text = escape(c.detail) + (f"\n[bold]fix:[/] {escape(c.fix)}" if c.fix and c.status != "pass" else "")
        table.add_row(c.name, _STATUS_STYLE[c.status], text)
    out.print(table)
    counts = {s: sum(c.status == s for c in checks) for s in ("pass", "warn", "fail")}
    verdict = "[bold red]problems to fix[/]" if counts["fail"] else "[green]nothing blocks `llmfleet up`[/]"
    out.print(f"{counts['pass']} passed, {counts['warn']} warnings, {counts['fail']} failed: {verdict}")


def loadtest_summary(summary: dict[str, Any], folder: Path) -> None:
    title = f"{summary['requests']} requests, {summary['failures']} failed"
    table = output.table("figure", "p50", "p95", "p99", title=title)
    for key, label in (("ttft_ms", "time to first token (ms)"), ("itl_ms", "inter-token latency (ms)"),
                       ("tpot_ms", "time per output token (ms)"), ("e2e_ms", "end to end (ms)"),
                       ("tokens_per_s_per_user", "tokens/s per user")):  # fmt: skip
        d = summary[key]
        table.add_row(label, *(str(d[q]) for q in ("p50", "p95", "p99")))
    out.print(table)
    out.print(f"throughput {summary['output_tokens_per_s']} output tokens/s, {summary['requests_per_s']} requests/s; "
              f"goodput {summary['goodput_requests_per_s']} requests/s")  # fmt: skip
    if summary.get("sweep"):
        knee = summary["knee"]
        out.print("knee: " + (f"{knee['users']} users, {knee['output_tokens_per_s']} tokens/s" if knee else "none"))
    for gate in summary["gates"]:
        mark = "[green]met[/]" if gate["passed"] else "[bold red]MISSED[/]"
        value = "no data" if gate["value"] is None else f"{gate['value']:g}"
        out.print(f"  gate {gate['name']}: {value} (at most {gate['threshold']:g} {gate['unit']}) {mark}")
    generator = summary["load_generator"]
    if generator["saturated"]:
        output.warn(
            f"the load generator's CPU p90 was {generator['cpu_percent_p90']}% of a core: client timings inflated."
        )
    server = summary["server"]
    if server.get("prometheus"):
        out.print(f"vLLM's own TTFT {server['vllm_ttft_ms']} ms; client p50 minus vLLM p50: "
                  f"{server['client_minus_vllm_ttft_p50_ms']} ms")  # fmt: skip
    out.print(f"report: {folder / 'report.html'}  (summary.json, requests.csv beside it)")


def drill_figure(figure: Figure, as_json: bool = False) -> None:
    """One figure of a drill, as it is measured: drills take minutes, and each line is worth seeing at once.
    With `--json` it goes to stderr: stdout carries only the JSON document."""
    verdict = "" if figure.met is None else (" [green]met[/]" if figure.met else " [bold red]MISSED[/]")
    target = f"  (target {figure.target})" if figure.target else ""
    output.figures(as_json).print(f"{figure.drill:>10} | {figure.name}: [bold]{figure.value}[/]{target}{verdict}")


def drill_summary(figures: list[Figure], as_json: bool) -> None:
    if as_json:
        output.json(figures)
        return
    missed = [f for f in figures if f.met is False]
    met = sum(f.met is True for f in figures)
    out.print(
        f"{met} targets met, {len(missed)} missed"
        + (": " + "; ".join(f"{f.drill}: {f.name}" for f in missed) if missed else ".")
    )


def soak_figures(figures: dict[str, Any], as_json: bool) -> None:
    if as_json:
        output.json(figures)
        return
    growth = figures["gateway_memory_growth"]
    out.print(f"soak: {figures['requests']} requests in {figures['duration_s']} s, {figures['errors']} errors")
    out.print(f"  gateway memory {figures['gateway_rss_start_mib']} MiB after the warm-up, "
              f"{figures['gateway_rss_end_mib']} MiB at the end (max {figures['gateway_rss_max_mib']}): "
              f"growth {'n/a' if growth is None else f'{growth:.1%}'} (at most 10 %)")  # fmt: skip
    out.print(f"  TTFT p50 {figures['ttft_ms']['p50']} ms, p99 {figures['ttft_ms']['p99']} ms; "
              f"{figures['output_tokens_per_s']} output tokens/s")  # fmt: skip


def tune_findings(findings: list[Finding], path: Path, as_json: bool) -> None:
    if as_json:
        output.json({"plan": str(path), "models": findings})
        return
    for f in findings:
        table = output.table("per server", "users", "TTFT p95 (ms)", "ITL p95 (ms)", "tokens/s", "errors", "SLOs",
                             title=f"{f.model} x{f.servers}: max_num_seqs {f.before} -> {f.chosen}")  # fmt: skip
        for lv in f.levels:
            table.add_row(str(lv.per_server), str(lv.users), str(lv.ttft_p95_ms), str(lv.itl_p95_ms),
                          f"{lv.output_tokens_per_s:g}", f"{lv.error_rate:.1%}",
                          "[green]met[/]" if lv.meets_slos else "[red]missed[/]")  # fmt: skip
        out.print(table)
    out.print(f"wrote {path}")


def bench_cell(cell: Cell) -> None:
    """One run of the gateway benchmark, as it finishes: the grid takes minutes."""
    from llmfleet.ops.bench import number  # here: bench loads numpy, which other commands need not wait for

    failures = f", [bold red]{cell.failures} failed[/] ({escape(cell.first_error or '')})" if cell.failures else ""
    out.print(
        f"{cell.way_in:>12} | {cell.concurrency:>3} users | {cell.max_tokens:>4} tokens | "
        f"{cell.requests_per_s:6.1f} req/s | {cell.tokens_per_s:7.0f} tok/s | "
        f"TTFT p50 {number(cell.ttft_p50_ms, '.1f')} ms p99 {number(cell.ttft_p99_ms, '.1f')} ms{failures}"
    )


def bench_comparisons(comparisons: list[Comparison]) -> None:
    table = output.table(
        "way in", "users", "max tokens", "added TTFT p50", "added TTFT p99", "req/s vs direct", "tok/s vs direct",
        "CPU s / 1k tokens", title="Against direct", title_justify="left",
    )  # fmt: skip
    from llmfleet.ops.bench import number

    for cmp in comparisons:
        c = cmp.cell
        table.add_row(
            c.way_in, str(c.concurrency), str(c.max_tokens), number(cmp.added_ttft_p50_ms, "+.1f") + " ms",
            number(cmp.added_ttft_p99_ms, "+.1f") + " ms", number(cmp.requests_ratio, ".2f"),
            number(cmp.tokens_ratio, ".2f"), number(c.cpu_s_per_1k_tokens, ".2f"),
        )  # fmt: skip
    out.print(table, width=max(out.width, 130))  # a narrow terminal: keep one row a line
