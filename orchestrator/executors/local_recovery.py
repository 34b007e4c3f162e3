"""Recovering a local attempt whose coordinator died: its pool's journal holds what it did not record.

The pool (``workers.pool``) outlives its coordinator: jobs it had started finish, and every event is
in the journal before the coordinator hears of it. Recovery publishes the new epoch (the pool then
starts nothing more), records every journaled event (``orchestrator.replay``: forward moves only,
idempotent tries), and with ``wait`` follows jobs still running until the pool has exited.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from orchestrator.db.recorder import AttemptRecorder
from orchestrator.executors.base import to_event
from orchestrator.replay import Replay, record
from workers.journal import Journal, read_lines
from workers.statuses import JobStatus
from workers.wire import WireError, decode_event

log = logging.getLogger("executioner.local")
POLL_SECONDS = 0.5  # how often a waiting recovery looks at a pool that is still running jobs


def still_running(journal: Journal, run_id: int, attempt_id: int) -> list[str] | None:
    """Read-only: jobs the attempt's pool is still running (None: it never ran on this machine)."""
    alive = journal.pool_alive(run_id, attempt_id)
    if alive is None:
        return None
    if not alive:
        return []
    return sorted({job for job, ended in _dispatches(journal, run_id, attempt_id) if not ended})


def peek(journal: Journal, run_id: int, attempt_id: int) -> list:
    """Read-only: every journaled event of the attempt, in order per dispatch."""
    return [event for path in journal.dispatch_files(run_id, attempt_id) for event in _events(path)]


def recover(
    journal: Journal, recorder: AttemptRecorder, statuses: dict[str, JobStatus], *, wait: bool, notify
) -> bool:
    run_id, attempt_id = recorder.run_id, recorder.attempt_id
    journal.publish_epoch(run_id, recorder.handle.epoch)  # its pool starts nothing more
    replay = Replay(statuses)
    notified = False
    stop = threading.Event()
    while True:
        alive = journal.pool_alive(run_id, attempt_id)  # before reading: its last lines are then in
        for path in journal.dispatch_files(run_id, attempt_id):
            for event in _events(path):
                record(recorder, replay.apply(event))
        recorder.flush()
        running = sorted({job for job, ended in _dispatches(journal, run_id, attempt_id) if not ended})
        # A live pool is fenced now (it starts nothing more): done once nothing of it runs, even
        # if it lingers because a paused coordinator still holds its pipe open.
        if not alive or not running:
            return True
        if not wait:
            return False
        if notify is not None and not notified and running:
            notify(running)
            notified = True
        recorder.handle.extend()
        stop.wait(POLL_SECONDS)  # the pool exits once its last job ends: poll its lock until then


def forget(journal: Journal, run_id: int, attempt_id: int) -> None:
    """The attempt is closed and everything in its journal recorded: remove the journal."""
    if journal.pool_alive(run_id, attempt_id) is not True:
        journal.remove_attempt(run_id, attempt_id)


def _events(path: Path) -> list:
    events = []
    for line in read_lines(path):
        try:
            e = decode_event(line)
            events.append(to_event(e.kind, e.job_id, e.first_try, e.body))
        except (WireError, KeyError, TypeError, ValueError) as exc:
            log.error("%s: skipping an unreadable journal line: %s", path, exc)
    return events


def _kind(line: bytes) -> str | None:
    try:
        return decode_event(line).kind
    except WireError:
        return None


def _dispatches(journal: Journal, run_id: int, attempt_id: int) -> list[tuple[str, bool]]:
    out = []
    for path in journal.dispatch_files(run_id, attempt_id):
        job = path.name.rsplit(".", 2)[0]
        out.append((job, any(_kind(line) == "ended" for line in read_lines(path))))
    return out
