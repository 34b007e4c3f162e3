"""Recovering a local attempt whose coordinator died: its pool's journal holds what it did not record.

The pool (``workers.pool``) outlives its coordinator: jobs it had started finish, and every event is
in the journal before the coordinator hears of it. Recovery publishes the new epoch (the pool then
starts nothing more), records every journaled event (``orchestrator.replay``: forward moves only,
idempotent tries), and with ``wait`` follows jobs still running until the pool has exited.
"""

from __future__ import annotations

import logging
import time

from orchestrator.db.recorder import AttemptRecorder
from orchestrator.executors.base import JobEnded, to_event
from orchestrator.replay import Replay, record
from workers.journal import DROPPED, JOURNAL_KINDS, TAKEN, Journal, read_lines
from workers.statuses import JobStatus
from workers.wire import WireError, decode_event

log = logging.getLogger("executioner.local")
POLL_SECONDS = 0.5  # how often a waiting recovery looks at a pool that is still running jobs


def still_running(journal: Journal, run_id: int, attempt_id: int) -> list[str] | None:
    """Read-only: jobs the attempt's pool is still running (None: it never ran on this machine)."""
    alive = journal.pool_alive(run_id, attempt_id)
    if alive is None:
        return None
    return _running(_read(journal, run_id, attempt_id)) if alive else []


def peek(journal: Journal, run_id: int, attempt_id: int) -> list:
    """Read-only: every journaled event of the attempt, in order per dispatch."""
    return [event for _, events in _read(journal, run_id, attempt_id) for event in events]


def recover(
    journal: Journal, recorder: AttemptRecorder, statuses: dict[str, JobStatus], *, wait: bool, notify
) -> bool:
    run_id, attempt_id = recorder.run_id, recorder.attempt_id
    journal.publish_epoch(run_id, recorder.handle.epoch)  # its pool starts nothing more
    replay = Replay(statuses)
    applied: dict[str, int] = {}  # job.try -> its events already recorded
    notified = False
    while True:
        alive = journal.pool_alive(run_id, attempt_id)  # before reading: its last lines are then in
        dispatches = _read(journal, run_id, attempt_id)  # one read: what is recorded is what is judged
        for key, events in dispatches:
            for event in events[applied.get(key, 0) :]:
                record(recorder, replay.apply(event))
            applied[key] = len(events)
        recorder.flush()
        running = _running(dispatches)
        # A live pool is fenced now (it starts nothing more): done once nothing of it runs, even
        # if it lingers because a paused coordinator still holds its pipe open.
        if not alive or not running:
            return True
        if not wait:
            return False
        if notify is not None and not notified:
            notify(running)
            notified = True
        recorder.handle.extend()
        time.sleep(POLL_SECONDS)  # nothing to wait on: the pool's jobs end in another process


def forget(journal: Journal, run_id: int, attempt_id: int) -> None:
    """The attempt is closed and everything in its journal recorded: remove the journal."""
    if journal.pool_alive(run_id, attempt_id) is not True:
        journal.remove_attempt(run_id, attempt_id)


def _read(journal: Journal, run_id: int, attempt_id: int) -> list[tuple[str, list]]:
    """Each dispatch in the attempt's journal (``job.try``, in the order the pool took them) with its
    events, read once. A dispatch the pool dropped (fenced before it started) is left out."""
    dispatches: dict[str, list] = {}
    for path in journal.files(run_id, attempt_id):
        if not path.name.startswith("events@"):  # a file per dispatch, by a pool before an upgrade
            dispatches[path.name.removesuffix(".jsonl")] = []
        _apply(dispatches, path, read_lines(path))
    return list(dispatches.items())


def _apply(dispatches: dict[str, list], path, lines: list[bytes]) -> None:
    for line in lines:
        try:
            e = decode_event(line, JOURNAL_KINDS)
            key = f"{e.job_id}.{e.first_try}"
            if e.kind == TAKEN:
                dispatches.setdefault(key, [])
            elif e.kind == DROPPED:
                dispatches.pop(key, None)
            else:
                dispatches.setdefault(key, []).append(to_event(e.kind, e.job_id, e.first_try, e.body))
        except (WireError, KeyError, TypeError, ValueError) as exc:
            log.error("%s: skipping an unreadable journal line: %s", path, exc)


def _running(dispatches: list[tuple[str, list]]) -> list[str]:
    """Jobs whose dispatch has no end in the journal yet (``job.try`` -> job)."""
    return sorted(
        {
            key.rsplit(".", 1)[0]
            for key, events in dispatches
            if not any(isinstance(e, JobEnded) for e in events)
        }
    )
