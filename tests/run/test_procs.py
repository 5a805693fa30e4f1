"""Stopping exactly what we started: a process group, identified by pid and start time."""

from __future__ import annotations

import subprocess
import time

from llmfleet.run import procs


def spawn_group() -> subprocess.Popen[bytes]:
    """A leader with a child, in a new process group, as the native runner starts a vLLM server."""
    return subprocess.Popen(["sh", "-c", "sleep 300 & sleep 300"], start_new_session=True)


def test_stop_groups_stops_the_leader_and_its_children() -> None:
    leader = spawn_group()
    started = procs.start_time(leader.pid)
    assert started is not None
    deadline = time.monotonic() + 5
    while len(procs.group_members(leader.pid, started)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(procs.group_members(leader.pid, started)) >= 2  # the shell and its background sleep
    assert procs.stop_groups([(leader.pid, started)], timeout=5) == []
    leader.wait(timeout=5)
    assert procs.group_members(leader.pid, started) == []


def test_a_pid_with_another_start_time_is_not_ours() -> None:
    leader = spawn_group()
    try:
        started = procs.start_time(leader.pid)
        assert started is not None
        assert procs.is_running(leader.pid, started)
        assert not procs.is_running(leader.pid, started - 1)  # a reused pid: same number, other process
    finally:
        procs.stop_groups([(leader.pid, started)], timeout=5)
        leader.wait(timeout=5)


def test_an_exited_process_is_not_running() -> None:
    done = subprocess.Popen(["sleep", "0.2"])
    started = procs.start_time(done.pid)
    assert started is not None
    time.sleep(0.6)  # exited, not yet reaped: a zombie
    assert not procs.is_running(done.pid, started)
    done.wait()
