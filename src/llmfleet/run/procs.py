"""Processes we start and must stop exactly: identified by pid *and* start time, so a reused pid is never hit."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its closing one.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited; only its exit status is left
        return None
    return int(fields[19])


def is_running(pid: int, started: int) -> bool:
    return start_time(pid) == started


def group_members(pgid: int, not_before: int) -> list[int]:
    """Live processes of process group `pgid` that started no earlier than its leader did."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if os.getpgid(pid) != pgid:
                continue
        except OSError:
            continue
        started = start_time(pid)
        if started is not None and started >= not_before:
            members.append(pid)
    return members


def stop_groups(groups: list[tuple[int, int]], timeout: float = 30.0) -> list[int]:
    """SIGTERM each (pgid, leader start time) group, SIGKILL what is left after `timeout`; return what survived."""
    for pgid, started in groups:
        for pid in group_members(pgid, started):
            _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(group_members(pgid, started) for pgid, started in groups):
            return []
        time.sleep(0.2)
    for pgid, started in groups:
        for pid in group_members(pgid, started):
            _signal(pid, signal.SIGKILL)
    time.sleep(0.5)
    return [pid for pgid, started in groups for pid in group_members(pgid, started)]


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # it exited since we looked
        os.kill(pid, sig)
