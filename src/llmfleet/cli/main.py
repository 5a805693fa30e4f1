"""The `llmfleet` command: every command group registered on the app, in the order `--help` lists them, and the
one error boundary."""

from __future__ import annotations

from llmfleet import output
from llmfleet.cli import files, fleet, host, keys, load, models, plan
from llmfleet.cli.app import app
from llmfleet.errors import FleetError

for command in (
    fleet.up, fleet.setup, fleet.down, fleet.status, fleet.logs, fleet.restart,
    files.render, files.dashboards,
    plan.plan, plan.secrets,
    host.exporter,
    models.download, models.verify,
    host.doctor,
    load.loadtest, load.tune, load.drill, load.soak,
):  # fmt: skip
    app.command()(command)
app.add_typer(keys.keys, name="keys")
app.add_typer(load.bench, name="bench")
app.add_typer(host.images, name="images")


def main() -> None:
    try:
        app()
    except FleetError as e:  # the user can fix it: exit 1, no traceback
        output.error(e)
        raise SystemExit(1) from None
    except Exception:  # a bug: the trace goes to a file, the user gets one line and its path
        output.bug(output.save_traceback())
        raise SystemExit(3) from None
