"""Settling an attempt whose coordinator died: the one recovery path, for every executor kind.

Only write commands settle (``resume``, ``mark-success``, ``rollback``), holding the run's lock: holding
it proves the old coordinator is gone, and taking it fenced that coordinator out. Its executor kind
records what the attempt's jobs delivered since (``ExecutorKind.recover``), then the attempt is
closed: with the outcome it earned if every job reached an end, else INTERRUPTED. ``status`` only
*shows* what settling would record (``preview``), without a lock or a write.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select

from orchestrator.context import Context
from orchestrator.db.closing import close_abandoned
from orchestrator.db.engine import read_tx, write_tx
from orchestrator.db.fencing import check_epoch
from orchestrator.db.queries import RunRecord, load_run
from orchestrator.db.recorder import AttemptRecorder
from orchestrator.db.schema import job_runs
from orchestrator.executors.registry import kind
from orchestrator.locks.base import RunHandle
from orchestrator.notify_rules import rules_from_snapshot
from orchestrator.replay import Replay
from orchestrator.state import JobState, RunState
from workers.statuses import AttemptStatus, JobStatus, attempt_outcome

log = logging.getLogger("executioner")


def load_settled(ctx: Context, handle: RunHandle, *, wait: bool = True) -> RunRecord:
    """The run's record once an attempt left RUNNING by a dead coordinator is closed.

    With ``wait``, jobs of that attempt still running (on workers, or in the local pool that
    outlived its coordinator) are followed to their end first; without it, such an attempt stays
    RUNNING for now.
    """
    run_id = handle.run_id
    with read_tx(ctx.engine) as conn:
        record = load_run(conn, run_id)
    last = record.last_attempt
    if last is None or last.status != AttemptStatus.RUNNING:
        return record
    executor = kind(last.executor)
    executor.check_recoverable(ctx, run_id, last.attempt_id, last.host)
    recorder = AttemptRecorder(ctx.engine)
    handle.attempt_id = last.attempt_id
    recorder.attach(handle)
    statuses = _statuses(ctx, run_id, last.attempt_id)
    if not executor.recover(ctx, recorder, statuses, wait=wait, notify=_waiting):
        with read_tx(ctx.engine) as conn:
            return load_run(conn, run_id)
    with write_tx(ctx.engine) as conn:
        check_epoch(conn, run_id, handle.epoch)
        status, in_flight = close_abandoned(
            conn, run_id, last.attempt_id, rules_from_snapshot(record.last_snapshot)
        )
    log.info("run %s attempt %s settled as %s", run_id, last.attempt_id, status)
    executor.after_abandoned(ctx, run_id, last.attempt_id, in_flight)
    with read_tx(ctx.engine) as conn:
        return load_run(conn, run_id)


@dataclass(slots=True)
class Preview:
    """What settling the run's last attempt would record, computed without writing anything."""

    status: str
    state: RunState
    still_running: list[str]
    settled: bool  # False: the attempt is really RUNNING (its coordinator holds the run)


def preview(ctx: Context, record: RunRecord, holder_alive: bool) -> Preview:
    """Read-only: the attempt's status and job states as a resume would record them now."""
    last = record.last_attempt
    if last is None or last.status != AttemptStatus.RUNNING or holder_alive:
        return Preview(last.status if last is not None else "", record.state, [], False)
    executor = kind(last.executor)
    running = executor.still_running(ctx, record.run_id, last.attempt_id) or []
    replay = Replay(_statuses(ctx, record.run_id, last.attempt_id))
    for event in executor.peek(ctx, record.run_id, last.attempt_id):
        replay.apply(event)
    changes: dict[str, JobState] = {}
    for job_id, status in replay.statuses.items():
        if running and job_id in running:
            continue
        if status in (JobStatus.QUEUED, JobStatus.RUNNING) and not running:
            status = JobStatus.ERROR  # what close_abandoned will record: in flight when it died
        if status not in (JobStatus.PENDING, JobStatus.SKIPPED):
            before = record.state[job_id]
            known = before.exit_code if before.attempt_id == last.attempt_id else None
            exit_code = replay.exit_codes.get(job_id, known)
            changes[job_id] = JobState(status, last.attempt_id, exit_code, replay.retries.get(job_id, 0))
    state = record.state.with_changes(changes)
    if running:
        status = AttemptStatus.RUNNING
    elif replay.unfinished():
        status = AttemptStatus.INTERRUPTED
    else:
        statuses = replay.statuses.values()
        status = attempt_outcome(
            all_success=all(
                s is JobStatus.SUCCESS or (s is JobStatus.SKIPPED and state.is_success(j))
                for j, s in replay.statuses.items()
            ),
            any_failure=any(s.is_failure for s in statuses),
        )
    return Preview(str(status), state, running, True)


def _statuses(ctx: Context, run_id: int, attempt_id: int) -> dict[str, JobStatus]:
    with read_tx(ctx.engine) as conn:
        return {
            r.job_id: JobStatus(r.status)
            for r in conn.execute(
                select(job_runs.c.job_id, job_runs.c.status).where(
                    job_runs.c.run_id == run_id, job_runs.c.attempt_id == attempt_id
                )
            )
        }


def _waiting(jobs: list[str]) -> None:
    log.warning(
        "the interrupted attempt still has %d job(s) running on workers (%s): waiting for them",
        len(jobs),
        ", ".join(jobs),
    )
