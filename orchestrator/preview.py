"""What settling a run's last attempt would record, computed without a lock or a write (``status``).

Settling itself (``orchestrator.settle``) is for write commands; a finished run needs none of its
machinery, so ``status`` of one imports none of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from orchestrator.context import Context
from orchestrator.db.engine import read_tx
from orchestrator.db.queries import RunRecord
from orchestrator.db.schema import job_runs
from orchestrator.state import JobState, RunState
from workers.statuses import AttemptStatus, JobStatus, attempt_outcome


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
    # An attempt left RUNNING by a dead coordinator (rare): only now the replay machinery.
    from orchestrator.executors.registry import kind
    from orchestrator.replay import Replay

    executor = kind(last.executor)
    running = executor.still_running(ctx, record.run_id, last.attempt_id) or []
    replay = Replay(attempt_statuses(ctx, record.run_id, last.attempt_id))
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


def attempt_statuses(ctx: Context, run_id: int, attempt_id: int) -> dict[str, JobStatus]:
    with read_tx(ctx.engine) as conn:
        return {
            r.job_id: JobStatus(r.status)
            for r in conn.execute(
                select(job_runs.c.job_id, job_runs.c.status).where(
                    job_runs.c.run_id == run_id, job_runs.c.attempt_id == attempt_id
                )
            )
        }
