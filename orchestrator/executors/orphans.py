"""Reaping jobs a dead local coordinator left running on this host.

The local pool lives inside the coordinator; its job processes run in their own sessions, so a
coordinator killed with SIGKILL leaves them behind. Once its attempt is declared INTERRUPTED, those
processes must not go on (the next attempt re-runs the jobs), so they are killed here. A pid is only
trusted if the process environment still names the same run, attempt and job: pids get reused.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
from collections.abc import Iterable
from pathlib import Path

from orchestrator.db.closing import InFlight
from workers.reaper import environment

GRACE_SECONDS = 3.0


def reap_orphans(run_id: int, attempt_id: int, jobs: Iterable[InFlight]) -> list[str]:
    host = socket.gethostname()
    reaped = []
    for job in jobs:
        if job.worker != host or not job.pid:
            continue  # ran elsewhere (or never started): nothing of it lives here
        marks = {
            f"EXECUTIONER_RUN_ID={run_id}".encode(),
            f"EXECUTIONER_ATTEMPT_ID={attempt_id}".encode(),
            f"EXECUTIONER_JOB_ID={job.job_id}".encode(),
        }
        members = [pid for pid in _group_members(job.pid) if marks <= environment(pid)]
        if members:
            _kill_group(job.pid)
            reaped.append(job.job_id)
    return reaped


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()  # after "(comm)", which may contain spaces
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def _kill_group(pgid: int) -> None:
    """SIGTERM, then SIGKILL if the leader is still there after a grace period."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        fd = os.pidfd_open(pgid)
    except OSError:  # the leader is gone already; finish off whatever is left of its group
        fd = None
    if fd is not None:
        try:
            select.select([fd], [], [], GRACE_SECONDS)
        finally:
            os.close(fd)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
