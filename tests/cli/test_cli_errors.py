"""Bad input to the CLI gets one clear error naming the file and field, exit 1, no traceback, nothing started."""

from __future__ import annotations

import socket
from pathlib import Path

import yaml
from conftest import Cli


def assert_clean_error(result, *expected: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error:") or "\nerror:" in result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr


def test_broken_plan_names_file_and_field(cli: Cli, tmp_path: Path) -> None:
    plan = tmp_path / "broken.yaml"
    plan.write_text(yaml.safe_dump({
        "device": "cpu", "servers": [{"model": "fleet-tiny", "max_model_len": 2048, "max_num_seqs": "many"}],
    }))  # fmt: skip
    result = cli("up", "--plan", str(plan))
    assert_clean_error(result, f"where: {plan}: servers[0].max_num_seqs")
    assert cli.state() is None


def test_bad_setting_names_the_variable(cli: Cli) -> None:
    cli.env["GATEWAY_PORT"] = "70000"
    assert_clean_error(cli("status"), "GATEWAY_PORT", "where: environment variable GATEWAY_PORT")


def test_port_already_taken_is_reported_with_what_to_change_and_nothing_starts(cli: Cli) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", cli.port("GATEWAY_PORT")))
        taken.listen()
        result = cli("up", "--plan", "cpu")
    assert_clean_error(result, f"port {cli.port('GATEWAY_PORT')}", "already in use", "GATEWAY_PORT in .env")
    assert cli.state() is None
    assert not (cli.run_dir / "logs").exists()


def test_unknown_runner_is_refused(cli: Cli) -> None:
    assert_clean_error(cli("up", "--plan", "cpu", "--runner", "kubernetes"), "runner")


def test_commands_on_a_stopped_fleet_say_so(cli: Cli) -> None:
    down = cli("down")
    assert down.returncode == 0 and "Nothing was running" in down.stdout
    status = cli("status", "--json")
    assert status.returncode == 1 and status.stdout.strip() == "[]"
