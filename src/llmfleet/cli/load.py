"""`loadtest`, `soak`, `drill` and `bench gateway`: load on the running fleet, its figures shown."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from llmfleet import output, paths, secrets
from llmfleet.cli import report
from llmfleet.errors import FleetError
from llmfleet.ops.loadtest.options import load_options
from llmfleet.run.runner import for_state
from llmfleet.run.state import running_state
from llmfleet.settings import load_settings


def loadtest(
    users: Annotated[int, typer.Option(min=1, help="Concurrent users (closed loop: each waits for its answer).")] = 4,
    spawn_rate: Annotated[float, typer.Option(min=0.1, help="Users started per second.")] = 4,
    duration: Annotated[str, typer.Option(help="How long to load, e.g. 30s, 2m (each step of a sweep).")] = "30s",
    out: Annotated[str | None, typer.Option(help="Folder for report.html, summary.json and CSVs.")] = None,
    scenario: Annotated[str, typer.Option(help="short, long or mixed (loadtest/scenarios.yaml).")] = "short",
    language: Annotated[str, typer.Option(help="both, en or zh.")] = "both",
    model: Annotated[str, typer.Option(help="Model to ask (default: the first the gateway lists).")] = "",
    max_tokens: Annotated[int, typer.Option(min=1, help="Output tokens per answer.")] = 64,
    stream: Annotated[bool, typer.Option("--stream/--no-stream", help="Streamed (default) or whole answers.")] = True,
    sweep: Annotated[str | None, typer.Option(help="Step the users, e.g. 1,2,4,8, and find the knee.")] = None,
    slo_ttft_p95: Annotated[float | None, typer.Option(help="Seconds; default SLO_TTFT_P95_SECONDS.")] = None,
    slo_itl_p95: Annotated[float | None, typer.Option(help="Seconds; default SLO_ITL_P95_SECONDS.")] = None,
    slo_error_rate: Annotated[float | None, typer.Option(help="0-1; default SLO_ERROR_RATE.")] = None,
) -> None:
    """Load the gateway with locust and measure TTFT, ITL and tokens/s; exit 1 if an SLO gate is missed."""
    _loadtest(
        users=users, spawn_rate=spawn_rate, duration=duration, out=out, scenario=scenario, language=language,
        model=model, max_tokens=max_tokens, stream=stream, sweep=sweep,
        slo=(slo_ttft_p95, slo_itl_p95, slo_error_rate),
    )  # fmt: skip


def tune(
    levels: Annotated[
        str | None,
        typer.Option(help="Requests per server to sweep, e.g. 1,2,4,8 (default: powers of two up to max_num_seqs)."),
    ] = None,
    duration: Annotated[str, typer.Option(help="How long each level is measured, e.g. 20s, 1m.")] = "20s",
    out: Annotated[
        str | None,
        typer.Option(help="Write the tuned plan here (default: the plan the fleet runs; fleet.NAME.yaml if built in)."),
    ] = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="Output tokens per answer.")] = 64,
    restart: Annotated[
        bool | None,
        typer.Option(
            "--restart/--no-restart", help="Restart with the tuned plan (default: ask on a terminal, else no)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
) -> None:
    """Measure the running fleet and write each model's max_num_seqs (the most concurrent requests per server that
    meet the SLOs in .env) into its plan, with the figures; then render, and restart if asked."""
    from llmfleet.ops import tune as tuning
    from llmfleet.plan.schema import plan_path
    from llmfleet.render import committed
    from llmfleet.run import fleet

    state, path, findings = tuning.measure(load_settings(), levels=levels, duration=duration, out=out,
                                           max_tokens=max_tokens)  # fmt: skip
    report.tune_findings(findings, path, as_json)
    if path == plan_path():
        committed.render(check=False)  # Compose, Kubernetes, the gateway and Prometheus follow the plan
    plan_arg = None if path == plan_path() else str(path)
    again = f"llmfleet down && llmfleet up{'' if plan_arg is None else f' --plan {plan_arg}'}"
    if restart is None and not as_json and sys.stdin.isatty():
        restart = typer.confirm(f"Restart the fleet with the tuned plan now ({again})?", default=False)
    if not restart:
        output.info(f"The running fleet is unchanged; to serve the tuned plan: {again}")
        return
    report.stopped(fleet.down())
    started = fleet.up(plan=plan_arg, runner=state.runner)
    if not isinstance(started, list):
        report.ready(started.state, started.settings, started.seconds)


def drill(
    users: Annotated[int, typer.Option(min=1, help="Concurrent streams of steady load.")] = 4,
    window: Annotated[float, typer.Option(min=5, help="Seconds each drill watches the load.")] = 15,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON at the end.")] = False,
) -> None:
    """Kill, freeze and restore backends under load; print the figures against their targets (exit 1 if missed).

    It stops and restarts the running fleet's vLLM servers: run it on a stack you may disturb."""
    if not _drill(users, window, as_json):
        raise typer.Exit(1)


def soak(
    users: Annotated[int, typer.Option(min=1, help="Concurrent users of steady load.")] = 4,
    duration: Annotated[str, typer.Option(help="How long, e.g. 60s, 10m.")] = "10m",
    warmup: Annotated[str, typer.Option(help="Load before memory is first measured.")] = "30s",
    out: Annotated[str | None, typer.Option(help="Folder for the report and soak.json.")] = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="Output tokens per answer.")] = 32,
    scenario: Annotated[str, typer.Option(help="short, long or mixed (long prompts need an 8k context).")] = "short",
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Steady load for a while: exit 1 on any error, or if the gateway's memory grows over 10 %."""
    _soak(
        users=users,
        duration=duration,
        warmup=warmup,
        out=out,
        max_tokens=max_tokens,
        scenario=scenario,
        as_json=as_json,
    )


bench = typer.Typer(no_args_is_help=True, help="Benchmarks that print figures (no pass or fail).")


@bench.command("gateway")
def bench_gateway(
    users: Annotated[str, typer.Option(help="Concurrent streams, comma-separated.")] = "1,16,64",
    short: Annotated[int, typer.Option(min=1, help="Tokens in a short answer.")] = 16,
    long: Annotated[int, typer.Option(min=1, help="Tokens in a long answer.")] = 256,
    seconds: Annotated[float, typer.Option(min=1, help="Seconds of load per run.")] = 15,
    alternative: Annotated[
        list[str] | None, typer.Option(help="NAME=URL of another OpenAI-compatible way in to compare (repeat).")
    ] = None,
    alternative_key: Annotated[
        str, typer.Option(help="The key the alternatives are sent: backends or gateway (the gateway's).")
    ] = "backends",
    gateway_key: Annotated[
        str,
        typer.Option(
            help="The key the gateway is sent: master, user (a user's key made for the run, then revoked), "
            "or limited-user (one with rpm and tpm it never reaches, so the door counts every request)."
        ),
    ] = "master",
    charge: Annotated[
        list[str] | None,
        typer.Option(help="NAME=PORT: also charge an alternative the CPU of the process on this local port."),
    ] = None,
    results: Annotated[
        str | None, typer.Option(help="Markdown file to append to [default: benchmarks/gateway.md].")
    ] = None,
) -> None:
    """The gateway's cost: the same streamed load sent to the backends directly and through the gateway.

    Prints added TTFT, throughput ratios and the gateway's CPU per 1,000 tokens, and appends them to the results
    file with the machine's facts. Needs the native runner (the backends' ports)."""
    from llmfleet.ops import bench_gateway as gateway_bench

    path, comparisons = gateway_bench.measure(
        users=parse_counts(users, "--users"), outputs={"short": short, "long": long}, seconds=seconds,
        alternatives=alternative or [], alternative_key=alternative_key, gateway_key=gateway_key, charges=charge or [],
        results=results,
        on_cell=report.bench_cell,
    )  # fmt: skip
    report.bench_comparisons(comparisons)
    output.info(f"Appended to {path}")


def parse_counts(text: str, flag: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise FleetError(
            f"{flag} {text!r} is not a list of positive whole numbers.", f"write e.g. {flag} 1,16,64.", flag
        )
    return counts


def _loadtest(
    *,
    users: int,
    spawn_rate: float,
    duration: str,
    out: str | None,
    scenario: str,
    language: str,
    model: str,
    max_tokens: int,
    stream: bool,
    sweep: str | None,
    slo: tuple[float | None, float | None, float | None],
) -> None:
    from llmfleet.ops.loadtest import run

    settings = load_settings()
    options = load_options(
        settings,
        out,
        "loadtest",
        users=users,
        spawn_rate=spawn_rate,
        duration=duration,
        scenario=scenario,
        language=language,
        model=model,
        max_tokens=max_tokens,
        stream=stream,
        sweep=run.parse_sweep(sweep),
        slo=slo,
    )
    key = secrets.read_secrets(settings.secrets_file)["LITELLM_MASTER_KEY"]
    summary = run.loadtest(options, key, paths.project_root())
    report.loadtest_summary(summary, options.out)
    run.judge(summary)


def _soak(
    *, users: int, duration: str, warmup: str, out: str | None, max_tokens: int, scenario: str, as_json: bool
) -> None:
    from llmfleet.ops import soak as soaking
    from llmfleet.ops.loadtest import run

    settings = load_settings()
    state = running_state(settings, "soak", "llmfleet soak")
    options = load_options(
        settings,
        out,
        "soak",
        users=users,
        spawn_rate=users,
        duration=duration,
        scenario=scenario,
        language="both",
        model="",
        max_tokens=max_tokens,
        stream=True,
        sweep=(),
        slo=(None, None, None),
    )
    key = secrets.read_secrets(settings.secrets_file)["LITELLM_MASTER_KEY"]
    figures = soaking.soak(options, run.parse_duration(warmup), key, paths.project_root(), for_state(state, settings))
    (options.out / "soak.json").write_text(json.dumps(figures, indent=2) + "\n")
    report.soak_figures(figures, as_json)
    soaking.judge(figures)


def _drill(users: int, window: float, as_json: bool) -> bool:
    from llmfleet.ops import drill as drills

    settings = load_settings()
    state = running_state(settings, "drill", "llmfleet drill")
    key = secrets.read_secrets(settings.secrets_file)["LITELLM_MASTER_KEY"]
    backends = drills.Backends(for_state(state, settings), settings)
    if len(backends.names) < 2:
        raise FleetError(
            f"the drills need two backends of one model; this fleet has {len(backends.names)}.",
            "run them on a plan with two servers of one model, such as the CPU plan (`llmfleet up --plan cpu`).",
            "llmfleet drill",
        )
    run = drills.Drill(
        f"http://127.0.0.1:{settings.GATEWAY_PORT}", key, state.models[0], backends, users=users, window_s=window,
        on_figure=lambda figure: report.drill_figure(figure, as_json),
    )  # fmt: skip
    figures = run.run()
    report.drill_summary(figures, as_json)
    return all(f.met is not False for f in figures)
