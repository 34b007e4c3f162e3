"""Closing the books of an attempt whose coordinator died (SIGKILL, power loss, lost host).

Only called by a process that holds the run's lock, which proves the old coordinator is gone (its lock
expired) and, through the epoch bump of taking it, fences it out should it wake up after all.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, case, func, select, update

from orchestrator.db.schema import attempts, job_runs, utcnow
from workers.statuses import (
    AttemptStatus,
    EndReason,
    JobStatus,
    SkipReason,
    check_attempt_transition,
    check_job_transition,
)

_IN_FLIGHT = (JobStatus.QUEUED, JobStatus.RUNNING)


@dataclass(frozen=True, slots=True)
class InFlight:
    """A job the dead coordinator had in flight: where it ran, to reap a process it may have left."""

    job_id: str
    worker: str | None
    pid: int | None


def mark_interrupted(conn: Connection, run_id: int, attempt_id: int) -> list[InFlight]:
    """RUNNING attempt -> INTERRUPTED; its jobs in flight -> ERROR (interrupted). Returns those jobs."""
    status = check_attempt_transition(AttemptStatus.RUNNING, AttemptStatus.INTERRUPTED)
    for before in _IN_FLIGHT:
        check_job_transition(before, JobStatus.ERROR)
    where_job = (job_runs.c.run_id == run_id) & (job_runs.c.attempt_id == attempt_id)
    in_flight = [
        InFlight(r.job_id, r.worker, r.pid)
        for r in conn.execute(
            select(job_runs.c.job_id, job_runs.c.worker, job_runs.c.pid).where(
                where_job, job_runs.c.status.in_(_IN_FLIGHT)
            )
        )
    ]
    conn.execute(
        update(job_runs)
        .where(where_job, job_runs.c.status.in_(_IN_FLIGHT))
        .values(
            status=JobStatus.ERROR,
            reason=EndReason.INTERRUPTED.value,
            detail="its coordinator stopped while the job was in flight",
        )
    )
    s = job_runs.c.status
    carried = (s == JobStatus.SKIPPED) & job_runs.c.reason.in_(
        [SkipReason.ALREADY_SUCCEEDED, SkipReason.MARKED_SUCCESS]
    )
    totals = conn.execute(
        select(
            func.count(),
            func.sum(case(((s == JobStatus.SUCCESS) | carried, 1), else_=0)),
            func.sum(case((s.in_([JobStatus.FAILED, JobStatus.ERROR, JobStatus.TIMEOUT]), 1), else_=0)),
            func.sum(case((s.in_([JobStatus.SKIPPED, JobStatus.UPSTREAM_FAILED]), 1), else_=0)),
        ).where(where_job)
    ).one()
    conn.execute(
        update(attempts)
        .where(
            attempts.c.run_id == run_id,
            attempts.c.attempt_id == attempt_id,
            attempts.c.status == AttemptStatus.RUNNING,
        )
        .values(
            status=status,
            end_time=utcnow(),
            successful_jobs=totals[1] or 0,
            failed_jobs=totals[2] or 0,
            skipped_jobs=totals[3] or 0,
        )
    )
    return in_flight
