"""Shared fixtures: free loopback ports, the `llmfleet` CLI run as a user runs it, and the real CPU stack."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from dotenv import dotenv_values

from llmfleet import paths
from llmfleet.models import runtimes
from llmfleet.plan import budget
from llmfleet.plan.catalog import load_catalog
from llmfleet.run import procs

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(singles: int, run: int = 0) -> list[int]:
    """`singles` distinct free ports, then the first of `run` consecutive free ones (vLLM server i listens on
    VLLM_PORT_BASE + i). Every socket stays bound until all are chosen, so no two answers are the same port.

    They come from below the kernel's ephemeral range: a port from inside it (what binding port 0 gives) can be
    taken as the source port of any outgoing connection while its server is down, and the drills' restart of that
    server then fails with "Address already in use"."""
    held: list[socket.socket] = []
    low, high = _below_ephemeral_range()
    try:
        chosen = [_random_free(low, high, 1, held) for _ in range(singles)]
        if run:
            chosen.append(_random_free(low, high, run, held))
        return chosen
    finally:
        for s in held:
            s.close()


def _below_ephemeral_range() -> tuple[int, int]:
    """The 12,000 ports below the first ephemeral one (32768 on Linux by default)."""
    try:
        first_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        first_ephemeral = 32768
    return max(1024, first_ephemeral - 12_000), first_ephemeral


def _random_free(low: int, high: int, run: int, held: list[socket.socket]) -> int:
    for _ in range(200):
        base = random.randrange(low, high - run)
        if all(_try_bind(base + i, held) for i in range(run)):
            return base
    raise RuntimeError(f"no run of {run} free ports found in {low}-{high}")


def _bind(port: int, held: list[socket.socket]) -> int:
    s = socket.socket()
    held.append(s)
    s.bind(("127.0.0.1", port))
    return s.getsockname()[1]


def _try_bind(port: int, held: list[socket.socket]) -> bool:
    try:
        _bind(port, held)
    except OSError:
        return False
    return True


@dataclass
class Cli:
    """`llmfleet` in a subprocess, with its own run dir, secrets and ports: never the user's."""

    env: dict[str, str]
    run_dir: Path

    def __call__(self, *args: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "llmfleet", *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"llmfleet {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    @property
    def secrets(self) -> dict[str, str]:
        return {k: v for k, v in dotenv_values(self.env["LLMFLEET_SECRETS_FILE"]).items() if v}

    def port(self, name: str) -> int:
        return int(self.env[name])

    def state(self) -> dict | None:
        path = self.run_dir / "state.json"
        return json.loads(path.read_text()) if path.is_file() else None


PORT_SETTINGS = (
    "GATEWAY_PORT",
    "LITELLM_PORT",
    "PROMETHEUS_PORT",
    "REDIS_PORT",
    "POSTGRES_PORT",
    "ROUTER_PORT",
    "ROUTER_METRICS_PORT",
    "VLLM_PORT_BASE",
)  # the last: a run of two

# Each CLI's key database, in /tmp: started by root, PostgreSQL runs as `postgres`, which cannot enter pytest's own
# folders. Removed at the end of the session.
_KEY_DATABASES: list[Path] = []


def _key_database() -> Path:
    path = Path(tempfile.gettempdir()) / f"llmfleet-test-keys-{uuid.uuid4().hex[:12]}"
    _KEY_DATABASES.append(path)
    return path


@pytest.fixture(scope="session", autouse=True)
def _remove_key_databases() -> Iterator[None]:
    yield
    for path in _KEY_DATABASES:
        shutil.rmtree(path, ignore_errors=True)


def make_cli(tmp: Path) -> Cli:
    env = {
        **os.environ,
        "LLMFLEET_ROOT": str(ROOT),
        "LLMFLEET_RUN_DIR": str(tmp / "run"),
        "LLMFLEET_SECRETS_FILE": str(tmp / ".env.secrets"),
        **dict(zip(PORT_SETTINGS, map(str, free_ports(len(PORT_SETTINGS) - 1, run=2)), strict=True)),
        "POSTGRES_DATA_DIR": str(_key_database()),
        "RUNNER": "native",
    }
    return Cli(env, tmp / "run")


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return make_cli(tmp_path)


def in_gateway_python(script: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run `script` in the gateway's own Python (LiteLLM's runtime, which `make setup` installs), with gateway/ on
    its path; return what it printed."""
    python = runtimes.GATEWAY.python(paths.project_root())
    preamble = "import sys; sys.path.insert(0, sys.argv[1])\n"
    result = subprocess.run([str(python), "-c", preamble + script, str(ROOT / "gateway"), *args],
                            capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def summed(text: str, metric: str) -> float:
    """A metric in Prometheus's text format, summed over its label sets."""
    return sum(float(v) for v in re.findall(rf"^{re.escape(metric)}\{{[^}}]*\}} (\S+)$", text, re.MULTILINE))


# vLLM's CPU worker logs the space it was given, then the tokens it made of it (captured: tests/data/vllm-logs).
KV_SPACE_LINE = re.compile(r"Explicitly set \(([\d.]+)/[\d.]+\) GiB for KV cache")
KV_TOKENS_LINE = re.compile(r"CPU KV cache size: ([\d,]+) tokens")
KV_TOLERANCE = 0.01  # vLLM hands KV cache out in whole blocks: it may fall short of the estimate by a block or so


def assert_logged_kv_cache_is_the_planners_estimate(logs: list[Path], model: str) -> None:
    """The planner's KV tokens for a CPU server (space over bytes per token) against what each live vLLM server logged
    once it had allocated its cache, within 1 %."""
    assert logs, "no server log to read"
    served = load_catalog(ROOT).models[model]
    for log in logs:
        text = log.read_text(encoding="utf-8", errors="replace")
        space, tokens = KV_SPACE_LINE.search(text), KV_TOKENS_LINE.search(text)
        assert space and tokens, f"{log.name} lacks its KV cache lines"
        logged = int(tokens.group(1).replace(",", ""))
        estimate = budget.cpu_kv_tokens(served, float(space.group(1)))
        print(f"{log.name}: vLLM {logged:,} KV tokens, planner {estimate:,}")
        assert estimate == pytest.approx(logged, rel=KV_TOLERANCE)


def assert_door_logs_show_a_fresh_request(cli: Callable[..., subprocess.CompletedProcess[str]], gateway: str) -> None:
    """`llmfleet logs door -n 50` shows a request just sent, marked: the check does not depend on the traffic
    before it (after a while of Prometheus scrapes the start-up banner has scrolled out of the last lines)."""
    marker = f"/llmfleet-logs-check-{uuid.uuid4().hex}"
    assert httpx.get(gateway + marker, timeout=10).status_code == 401  # no key: the door answers, and logs it
    deadline = time.monotonic() + 30
    while True:
        logs = cli("logs", "door", "-n", "50")
        assert logs.returncode == 0, logs.stderr
        if marker in logs.stdout:
            return
        assert time.monotonic() < deadline, f"`llmfleet logs door` never showed {marker}:\n{logs.stdout[-800:]}"
        time.sleep(1)


def leftovers(state: dict) -> list[int]:
    """Live processes of any process group the stack started (zombies have exited and do not count)."""
    return [pid for s in state["services"] for pid in procs.group_members(s["pid"], s["started"])]


@dataclass
class Stack:
    cli: Cli
    state: dict
    up_output: str

    @property
    def key(self) -> str:
        return self.cli.secrets["LITELLM_MASTER_KEY"]

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.cli.port('GATEWAY_PORT')}"

    @property
    def prometheus(self) -> str:
        return f"http://127.0.0.1:{self.cli.port('PROMETHEUS_PORT')}"

    def backend(self, name: str) -> str:
        return next(f"http://127.0.0.1:{s['port']}" for s in self.state["services"] if s["name"] == name)

    def services(self) -> list[dict]:
        """The services as they are now: a test that restarted a backend gave it a new pid."""
        return (self.cli.state() or self.state)["services"]

    def restore(self, *names: str, timeout: float = 60) -> None:
        """Start `names` again, then wait until the gateway answers: its cooldown of a failed backend outlasts the
        restart, and the next test expects a serving fleet."""
        restarted = self.cli("restart", *names, timeout=900)
        assert restarted.returncode == 0, restarted.stderr
        self.wait_until_it_answers(self.gateway, timeout)

    def wait_until_it_answers(self, base: str, timeout: float) -> None:
        """Until `base` (the door, or LiteLLM itself) answers a one-token completion with the master key."""
        body = {"model": self.state["models"][0], "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        deadline = time.monotonic() + timeout
        while (status := httpx.post(base + "/v1/chat/completions", json=body, timeout=30,
                                    headers={"Authorization": f"Bearer {self.key}"}).status_code) != 200:  # fmt: skip
            assert time.monotonic() < deadline, f"{base} still answers {status} after {timeout:g} s"
            time.sleep(1)


# The stack's own tests run the synthetic model: they test the fleet (routing, failover, metrics, limits), not the
# model's answers, and fleet-tiny is ready in seconds. tests/test_real_model.py boots the real one (plan `cpu`).
STACK_PLAN = "cpu-tiny"
STACK_MODEL = "fleet-tiny"


@contextmanager
def booted(tmp: Path, plan: str, timeout: float = 900, env: dict[str, str] | None = None) -> Iterator[Stack]:
    """`llmfleet up --plan PLAN` with its own run dir, secrets and ports (and settings from `env`); at the end,
    `llmfleet down` must leave no process of it running and no port of it open."""
    cli = make_cli(tmp)
    cli.env.update(env or {})
    up = cli("up", "--plan", plan, timeout=timeout)
    state = cli.state()
    try:
        assert up.returncode == 0, f"llmfleet up failed:\n{up.stdout}\n{up.stderr}"
        assert state is not None
        _BOOTED.append(cli)
        yield Stack(cli, state, up.stdout)
    finally:
        if cli in _BOOTED:
            _BOOTED.remove(cli)
        now = cli.state()  # tests that restart a backend change its pid: check what runs now as well
        down = cli("down", timeout=120)
        if state is not None:
            assert down.returncode == 0, down.stderr
            assert f"Stopped {', '.join(s['name'] for s in state['services'])}" in down.stdout
            assert leftovers(state) == [] and leftovers(now or state) == [], "processes left after `llmfleet down`"
            assert cli.state() is None
            assert all(_is_free(s["port"]) for s in state["services"]), "a port of the stack is still open"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The real CPU stack (two vLLM CPU servers, LiteLLM, Prometheus), started with `llmfleet up --plan cpu-tiny`:
    the synthetic model, so the fleet's own tests do not wait on a real one.

    One for the whole session: booting takes a minute. Tests that break a backend bring it back.
    """
    with booted(tmp_path_factory.mktemp("stack"), STACK_PLAN) as running:
        yield running


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# --- what a failed stack test leaves for the CI log --------------------------------------------------------------

_BOOTED: list[Cli] = []  # the stacks running now, newest last


def _stack_diagnosis(cli: Cli) -> str:
    """`llmfleet status` and the last lines each service logged (LiteLLM's debug lines left out): a stack test that
    fails in CI says which service stopped answering, and why, without a second run."""
    parts = []
    status = cli("status", timeout=60)
    parts.append(f"$ llmfleet status  (exit {status.returncode})\n{status.stdout}{status.stderr}")
    for log in sorted((cli.run_dir / "logs").glob("*.log")):
        lines = [line for line in log.read_text(errors="replace").splitlines() if " - DEBUG" not in line]
        parts.append(f"--- {log.name}, last lines\n" + "\n".join(lines[-25:]))
    return "\n".join(parts)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.failed and "stack" in getattr(item, "fixturenames", ()) and _BOOTED:
        try:
            report.sections.append(("stack diagnosis", _stack_diagnosis(_BOOTED[-1])))
        except Exception as problem:  # a diagnosis must never hide the failure it explains
            report.sections.append(("stack diagnosis", f"could not be gathered: {problem!r}"))
    return report
