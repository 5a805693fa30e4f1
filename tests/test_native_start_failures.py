"""A server that fails to start is reported with the end of its log, and everything else is stopped."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import Cli

pytestmark = pytest.mark.stack


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(int(entry.name))
    return found


def test_failed_server_is_reported_with_its_log_and_the_rest_is_stopped(cli: Cli, tmp_path: Path) -> None:
    server = {"model": "fleet-tiny", "max_model_len": 2048, "max_num_seqs": 4}
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        yaml.safe_dump({"device": "cpu", "servers": [server, {**server, "extra_args": ["--no-such-flag"]}]})
    )
    result = cli("up", "--plan", str(plan), timeout=600)
    assert result.returncode == 1
    assert "vllm-cpu1 exited with code" in result.stderr
    assert "everything started with it was stopped" in result.stderr
    assert "Likely cause: vLLM does not know the flag(s) --no-such-flag" in result.stderr  # read from its log
    assert "unrecognized arguments: --no-such-flag" in result.stderr  # the log line it was read from
    assert "llmfleet logs vllm-cpu1" in result.stderr
    assert cli.state() is None
    assert processes_mentioning(str(cli.run_dir)) == []  # the gateway and Prometheus, by their config paths
    assert processes_mentioning(f"--port {cli.port('VLLM_PORT_BASE')}") == []  # the healthy vLLM server
