"""What `gateway/keystore.py` answered, for either runner: it prints JSON, and its exit code says whose fault a
failure is (2: the request, naming a flag; 3: the database does not answer)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from llmfleet.errors import FleetError

SCRIPT = "keystore.py"  # in gateway/, beside the files LiteLLM loads


def answer(result: subprocess.CompletedProcess[str], database: str) -> Any:
    """The JSON answer of a run of keystore.py, or a FleetError naming the flag to change. `database`: where the
    key database's address is set, for the message when it does not answer."""
    try:
        found = json.loads(result.stdout)
    except json.JSONDecodeError:
        found = {"error": (result.stderr or result.stdout).strip()[-800:] or f"exit code {result.returncode}"}
    if result.returncode == 0:
        return found
    if result.returncode == 3:
        raise FleetError(found["error"], "start the fleet (`llmfleet up`); `llmfleet status` shows postgres.", database)
    raise FleetError(found["error"], "change what the message names and run the command again.",
                     found.get("flag") or "llmfleet keys")  # fmt: skip
