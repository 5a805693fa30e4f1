"""The `llmfleet` command: the typer app (app.py), one module per command group, the display code (report.py) and
the one error boundary (main.py)."""
