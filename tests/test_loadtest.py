"""`llmfleet loadtest` against the real CPU stack: figures, report, gates, a sweep, and mid-stream errors."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, Stack, summed

from llmfleet.run import procs

pytestmark = pytest.mark.stack

FIRST_TOKENS = 16  # a few chunks of a 2,000-token answer: the server is well into it, and far from its end
RELAY_SECONDS = 8  # the gateway relays what the server sent before the freeze
STEADY_SECONDS = 1  # an answer made this long on end is a client's stream, not a health check
LENIENT = ["--slo-ttft-p95", "60", "--slo-itl-p95", "10", "--slo-error-rate", "0.5"]  # a slow CI box still passes


def loadtest(stack: Stack, out: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return stack.cli("loadtest", "--out", str(out), "--spawn-rate", "10", *args, timeout=timeout)


def test_short_run_writes_report_summary_and_csv_with_figures(stack: Stack, tmp_path: Path) -> None:
    result = loadtest(stack, tmp_path, "--users", "2", "--duration", "8s", "--max-tokens", "16", *LENIENT)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["requests"] > 0 and summary["failures"] == 0
    for figure in ("ttft_ms", "itl_ms", "e2e_ms", "tpot_ms"):
        assert 0 < summary[figure]["p50"] <= summary[figure]["p95"] <= summary[figure]["max"], figure
    assert summary["output_tokens"] == 16 * summary["requests"]  # ignore_eos: every answer as long as asked
    assert summary["output_tokens_per_s"] > 0
    assert all(g["passed"] for g in summary["gates"])
    assert summary["server"]["prometheus"] and summary["server"]["vllm_ttft_ms"]["p50"] is not None
    assert summary["load_generator"]["cpu_percent_mean"] is not None
    with (tmp_path / "requests.csv").open() as f:
        assert len(list(csv.DictReader(f))) == summary["requests"]
    page = (tmp_path / "report.html").read_text()
    assert page.count("<svg") >= 3 and "time to first token" in page and "<script" not in page


def test_a_gate_that_must_fail_fails_and_names_it(stack: Stack, tmp_path: Path) -> None:
    result = loadtest(stack, tmp_path, "--users", "1", "--duration", "4s", "--max-tokens", "8", "--slo-ttft-p95",
                      "0.000001", "--slo-itl-p95", "10")  # fmt: skip
    assert result.returncode == 1
    assert "TTFT p95" in result.stderr and "SLO_TTFT_P95_SECONDS" in result.stderr
    assert "ITL p95" not in result.stderr.split("error:")[1].split("fix:")[0]  # only the gate that failed
    assert (tmp_path / "report.html").is_file()  # the report is written all the same


def test_sweep_steps_the_users_and_finds_the_knee(stack: Stack, tmp_path: Path) -> None:
    result = loadtest(stack, tmp_path, "--sweep", "1,2", "--duration", "5s", "--max-tokens", "8", *LENIENT)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [row["users"] for row in summary["sweep"]] == [1, 2]
    assert summary["knee"]["users"] in (1, 2) and summary["knee"]["meets_slos"]
    assert (tmp_path / "users-001" / "samples.jsonl").is_file() and (tmp_path / "users-002" / "samples.jsonl").is_file()
    assert "Sweep" in (tmp_path / "report.html").read_text()


def test_bad_options_get_a_clear_error(stack: Stack, tmp_path: Path) -> None:
    for args, where in ((["--duration", "soon"], "--duration"), (["--sweep", "4,2"], "--sweep"),
                        (["--scenario", "epic"], "--scenario")):  # fmt: skip
        result = loadtest(stack, tmp_path, *args, "--users", "1")
        assert result.returncode == 1 and f"where: {where}" in result.stderr and "Traceback" not in result.stderr


BACKENDS = ("vllm-cpu0", "vllm-cpu1")


def signal_backends(stack: Stack, sig: signal.Signals) -> None:
    for service in stack.services():
        if service["name"].startswith("vllm-"):
            for pid in procs.group_members(service["pid"], service["started"]):
                os.kill(pid, sig)


def generation(stack: Stack) -> dict[str, tuple[float, float]]:
    """Each backend's tokens made so far and the requests it is making now: from its own /metrics."""
    counts = {}
    for name in BACKENDS:
        text = httpx.get(stack.backend(name) + "/metrics", timeout=10).text
        counts[name] = (summed(text, "vllm:generation_tokens_total"), summed(text, "vllm:num_requests_running"))
    return counts


def freeze_backends_mid_stream(stack: Stack, timeout: float = 120) -> None:
    """Leave both backends frozen (SIGSTOP) in the middle of an answer the client has started to read.

    Timed on the servers' own counters, not on the gateway's output, which other clients share (Prometheus, the
    router's polls). A backend counts as streaming the client's answer once it has been making one answer for
    STEADY_SECONDS on end, FIRST_TOKENS of it at least: the gateway's health checks are answers of a token or two,
    and an answer the gateway gave up on before its first token (a 408 on a busy host) is aborted. Then the gateway
    is given time to relay what it already has; it relays seconds behind a server on a 2-core host."""
    deadline = time.monotonic() + timeout
    busy_since: dict[str, tuple[float, float]] = {}  # backend -> (when it was first seen making an answer, tokens)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        for name, (made, running) in generation(stack).items():
            if running < 1:
                busy_since.pop(name, None)
                continue
            since, made_then = busy_since.setdefault(name, (time.monotonic(), made))
            if time.monotonic() - since >= STEADY_SECONDS and made - made_then >= FIRST_TOKENS:
                signal_backends(stack, signal.SIGSTOP)
                time.sleep(RELAY_SECONDS)
                return
    raise AssertionError("no answer was seen streaming from a backend")


def test_an_error_event_mid_stream_counts_as_a_failure(stack: Stack, tmp_path: Path) -> None:
    """It kills both backends while answers are streaming, then brings them back for the tests after it."""
    env = {**stack.cli.env, "LITELLM_MASTER_KEY": stack.key}
    run = subprocess.Popen(
        [sys.executable, "-m", "llmfleet", "loadtest", "--out", str(tmp_path), "--users", "1", "--spawn-rate", "10",
         "--duration", "30s", "--max-tokens", "2000", *LENIENT],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        freeze_backends_mid_stream(stack)
        signal_backends(stack, signal.SIGKILL)  # a frozen process dies at SIGKILL too
        run.communicate(timeout=300)
    finally:
        run.kill()
        stack.restore(*BACKENDS)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["failures"] >= 1
    assert "error event in the stream" in summary["failures_by_reason"], summary["failures_by_reason"]
