"""The CLI's own options: --version, and shell completion (--install-completion, --show-completion)."""

from __future__ import annotations

from typer.testing import CliRunner

from llmfleet.cli.app import installed_version
from llmfleet.cli.main import app

runner = CliRunner()


def test_version_prints_the_installed_version_and_exits_0() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"llmfleet {installed_version()}"
    assert installed_version() != "unknown"  # the test venv installs the package (pip install -e)


def test_help_offers_version_and_shell_completion() -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--version", "--install-completion", "--show-completion"):
        assert option in result.stdout


def test_show_completion_prints_a_bash_completion_script() -> None:
    result = runner.invoke(app, ["--show-completion", "bash"], prog_name="llmfleet")
    assert result.exit_code == 0
    assert "_LLMFLEET_COMPLETE" in result.stdout and "complete " in result.stdout
