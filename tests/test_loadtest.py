"""`llmfleet loadtest` against the real CPU stack: figures, report, gates, a sweep, and mid-stream errors."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import ROOT, Stack

from llmfleet.run import procs

pytestmark = pytest.mark.stack

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


def writes(service: dict) -> int:
    """How many write() calls a service's processes have made so far, sockets included; from /proc, which answers
    however busy they are."""
    total = 0
    for pid in procs.group_members(service["pid"], service["started"]):
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).io_counters().write_count
    return total


def door(stack: Stack) -> dict:
    (found,) = [s for s in stack.services() if s["name"] == "door"]
    return found


def signal_backends(stack: Stack, sig: signal.Signals) -> None:
    for service in stack.services():
        if service["name"].startswith("vllm-"):
            for pid in procs.group_members(service["pid"], service["started"]):
                os.kill(pid, sig)


def answered(stack: Stack) -> int:
    """Requests the door has finished so far: its access log's completion lines."""
    log = stack.cli.run_dir / "logs" / "door.log"
    return sum(1 for line in log.read_text(errors="replace").splitlines() if '"POST /v1/chat/completions"' in line)


def freeze_backends_mid_stream(stack: Stack, since: int, timeout: float = 120) -> None:
    """Leave both backends frozen (SIGSTOP) in the middle of an answer whose headers and first chunks the client
    already has. Counted in the door's write() calls since the load test started (`since`; from /proc, which
    answers however busy the processes are): its opening GET /v1/models takes 4 to 6 (the key check, the request,
    the answer, the access log), a completion's start 2 or 3, then each relayed chunk one, 13 by the time a client
    reads the first chunk. The servers are frozen as soon as a completion has started (8), so a 2,000-token answer
    cannot finish meanwhile: the gateway relays seconds behind a server on a 2-core host, and a server killed
    after its last token cuts nothing. If the relay then reaches 25 the client holds part of an answer that can
    never end normally. Frozen before the server wrote anything, the gateway gives up on that request (its
    first-token timeout) and the client sends the next, whose writes would count too: so an attempt counts only
    while no completion has ended at the door since the freeze; otherwise, or after 10 s, they thaw and the next
    answer is tried."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.02)
        if writes(door(stack)) - since < 8:
            continue
        signal_backends(stack, signal.SIGSTOP)
        ended = answered(stack)
        settle = time.monotonic() + 10
        while time.monotonic() < settle and answered(stack) == ended:
            time.sleep(0.1)
            if writes(door(stack)) - since >= 25 and answered(stack) == ended:
                return
        signal_backends(stack, signal.SIGCONT)
        time.sleep(1)  # the answer that was frozen ends, or goes on: the next attempt starts after it
        since = writes(door(stack))
    raise AssertionError("no answer was seen streaming to the client")


def test_an_error_event_mid_stream_counts_as_a_failure(stack: Stack, tmp_path: Path) -> None:
    """It kills both backends while answers are streaming, then brings them back for the tests after it."""
    env = {**stack.cli.env, "LITELLM_MASTER_KEY": stack.key}
    since = writes(door(stack))
    run = subprocess.Popen(
        [sys.executable, "-m", "llmfleet", "loadtest", "--out", str(tmp_path), "--users", "1", "--spawn-rate", "10",
         "--duration", "45s", "--max-tokens", "2000", *LENIENT],  # time for a few attempts
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        freeze_backends_mid_stream(stack, since)
        signal_backends(stack, signal.SIGKILL)  # a frozen process dies at SIGKILL too
        run.communicate(timeout=300)
    finally:
        run.kill()
        stack.restore("vllm-cpu0", "vllm-cpu1")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["failures"] >= 1
    assert "error event in the stream" in summary["failures_by_reason"], summary["failures_by_reason"]
