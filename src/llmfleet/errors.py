"""The one exception the core raises for anything a user can fix."""

from __future__ import annotations

import difflib
from typing import Any


class FleetError(Exception):
    """What went wrong (with the values involved), how to fix it, and where (file and key, flag or variable)."""

    def __init__(self, what: str, fix: str, where: str | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.fix = fix
        self.where = where

    def __str__(self) -> str:
        lines = [self.what, f"fix: {self.fix}"]
        if self.where:
            lines.append(f"where: {self.where}")
        return "\n".join(lines)


def yaml_path(file: str, loc: tuple[int | str, ...]) -> str:
    """Turn pydantic's ('servers', 1, 'max_model_len') into 'fleet.yaml: servers[1].max_model_len'."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return f"{file}: {path}" if path else file


def first_problem(errors: list[Any]) -> tuple[str, tuple[int | str, ...]]:
    """The most useful of pydantic's errors, as (message, location).

    A misspelled key shows up twice: as an unknown key and as a missing one. The unknown key is the one the
    user wrote, so it comes first, with the missing sibling it most likely meant.
    """
    extra = [e for e in errors if e["type"] == "extra_forbidden"]
    if not extra:
        return errors[0]["msg"], tuple(errors[0]["loc"])
    loc = tuple(extra[0]["loc"])
    missing = [str(e["loc"][-1]) for e in errors if e["type"] == "missing" and tuple(e["loc"][:-1]) == loc[:-1]]
    close = difflib.get_close_matches(str(loc[-1]), missing, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"{loc[-1]} is not a known key{hint}", loc
