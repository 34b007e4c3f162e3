"""How an attempt ends: its totals from its job rows (in SQL), its final status, in one place.

The coordinator closes the attempt it ran; crash recovery closes one whose coordinator died. Both
call ``close_attempt`` in the transaction that writes the end, so totals never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, case, func, select, update

from orchestrator.db.schema import attempts, job_runs, utcnow
from orchestrator.notify_rules import NotifyRule
from workers.statuses import (
    AttemptStatus,
    EndReason,
    JobStatus,
    SkipReason,
    attempt_outcome,
    check_attempt_transition,
    check_job_transition,
)

_IN_FLIGHT = (JobStatus.QUEUED, JobStatus.RUNNING)
_UNFINISHED = (JobStatus.PENDING, *_IN_FLIGHT)


@dataclass(frozen=True, slots=True)
class Totals:
    """SPEC's attempt totals: jobs in its workflow; effectively SUCCESS at its end; ended
    FAILED/ERROR/TIMEOUT in it; SKIPPED or UPSTREAM_FAILED in it."""

    total_jobs: int
    successful_jobs: int
    failed_jobs: int
    skipped_jobs: int
    rule_skipped: int = 0  # SKIPPED by their trigger rule: nothing to do, nothing wrong (not stored)


@dataclass(frozen=True, slots=True)
class InFlight:
    """A job the dead coordinator had in flight: where it ran, to reap a process it may have left."""

    job_id: str
    worker: str | None
    pid: int | None


def attempt_totals(conn: Connection, run_id: int, attempt_id: int) -> Totals:
    s = job_runs.c.status
    carried = (s == JobStatus.SKIPPED) & job_runs.c.reason.in_(
        [SkipReason.ALREADY_SUCCEEDED, SkipReason.MARKED_SUCCESS]
    )
    row = conn.execute(
        select(
            func.count(),
            func.sum(case(((s == JobStatus.SUCCESS) | carried, 1), else_=0)),
            func.sum(case((s.in_([JobStatus.FAILED, JobStatus.ERROR, JobStatus.TIMEOUT]), 1), else_=0)),
            func.sum(case((s.in_([JobStatus.SKIPPED, JobStatus.UPSTREAM_FAILED]), 1), else_=0)),
            func.sum(
                case(((s == JobStatus.SKIPPED) & (job_runs.c.reason == SkipReason.TRIGGER_RULE), 1), else_=0)
            ),
        ).where(job_runs.c.run_id == run_id, job_runs.c.attempt_id == attempt_id)
    ).one()
    return Totals(row[0], row[1] or 0, row[2] or 0, row[3] or 0, row[4] or 0)


def close_attempt(
    conn: Connection,
    run_id: int,
    attempt_id: int,
    *,
    cancelled: bool = False,
    interrupted: bool = False,
    notify: tuple[NotifyRule, ...] = (),
    failed_reason: str | None = None,
) -> tuple[AttemptStatus, Totals]:
    """Write the attempt's end: INTERRUPTED if asked, else the outcome its job rows say (FAILED with
    ``failed_reason``, e.g. a missed deadline) — and, in the same transaction, its notifications."""
    totals = attempt_totals(conn, run_id, attempt_id)
    if interrupted:
        status = AttemptStatus.INTERRUPTED
    else:
        status = attempt_outcome(
            all_success=totals.successful_jobs + totals.rule_skipped == totals.total_jobs,
            any_failure=totals.failed_jobs > 0 or failed_reason is not None,
            cancelled=cancelled and failed_reason is None,
        )
    check_attempt_transition(AttemptStatus.RUNNING, status)
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
            total_jobs=totals.total_jobs,
            successful_jobs=totals.successful_jobs,
            failed_jobs=totals.failed_jobs,
            skipped_jobs=totals.skipped_jobs,
            end_reason=failed_reason,
        )
    )
    if notify and failed_reason == "deadline":
        _notify_end(conn, run_id, attempt_id, status, "deadline_missed", notify, failed_reason)
    event = {
        AttemptStatus.FAILED: "failure",
        AttemptStatus.INTERRUPTED: "failure",
        AttemptStatus.SUCCESS: "success",
    }
    if notify and status in event:
        _notify_end(conn, run_id, attempt_id, status, event[status], notify, failed_reason)
    return status, totals


def _notify_end(conn: Connection, run_id, attempt_id, status, event, rules, reason) -> None:
    """The attempt's end as an event, in the transaction that writes the end (orchestrator.notify)."""
    from orchestrator.notify import outbox_rows, record

    head = conn.execute(
        select(attempts.c.application_name).where(
            attempts.c.run_id == run_id, attempts.c.attempt_id == attempt_id
        )
    ).scalar_one()
    failed = conn.execute(
        select(job_runs.c.job_id, job_runs.c.status, job_runs.c.exit_code).where(
            job_runs.c.run_id == run_id,
            job_runs.c.attempt_id == attempt_id,
            job_runs.c.status.in_([JobStatus.FAILED, JobStatus.ERROR, JobStatus.TIMEOUT]),
        )
    ).all()
    jobs = [{"job": j, "status": s, "exit_code": c} for j, s, c in failed]
    what = ", ".join(
        f"{j['job']} {j['status']}" + ("" if j["exit_code"] is None else f" exit {j['exit_code']}")
        for j in jobs[:20]
    )
    text = f"{head} run {run_id} attempt {attempt_id}: {status}"
    text += (f" ({reason})" if reason else "") + (f": {what}" if what else "")
    payload = {
        "title": f"{head}: run {run_id} {status}",
        "text": text,
        "run_id": run_id,
        "attempt_id": attempt_id,
        "application_name": head,
        "status": str(status),
        "reason": reason,
        "failed_jobs": jobs,
        "resume": f"executioner resume {run_id}" if status != AttemptStatus.SUCCESS else None,
    }
    record(conn, outbox_rows(rules, event, payload, run_id=run_id, attempt_id=attempt_id))


def close_abandoned(
    conn: Connection, run_id: int, attempt_id: int, notify: tuple[NotifyRule, ...] = ()
) -> tuple[AttemptStatus, list[InFlight]]:
    """Close an attempt whose coordinator died, after recovery recorded what its jobs delivered.

    If every planned job reached an end (the coordinator died just before writing the attempt's own
    end, or gave up during a database outage), the attempt gets the outcome it earned, so a run whose
    jobs all succeeded is SUCCESS, not INTERRUPTED. Otherwise it is INTERRUPTED and its jobs still in
    flight are ERROR (interrupted); they are returned, to reap what they may have left behind.
    """
    where_job = (job_runs.c.run_id == run_id) & (job_runs.c.attempt_id == attempt_id)
    unfinished = conn.execute(
        select(job_runs.c.job_id, job_runs.c.status, job_runs.c.worker, job_runs.c.pid).where(
            where_job, job_runs.c.status.in_(_UNFINISHED)
        )
    ).all()
    if not unfinished:
        status, _ = close_attempt(conn, run_id, attempt_id, notify=notify)
        return status, []
    for before in _IN_FLIGHT:
        check_job_transition(before, JobStatus.ERROR)
    in_flight = [InFlight(r.job_id, r.worker, r.pid) for r in unfinished if r.status in _IN_FLIGHT]
    conn.execute(
        update(job_runs)
        .where(where_job, job_runs.c.status.in_(_IN_FLIGHT))
        .values(
            status=JobStatus.ERROR,
            reason=EndReason.INTERRUPTED.value,
            detail="its coordinator stopped while the job was in flight",
        )
    )
    status, _ = close_attempt(conn, run_id, attempt_id, interrupted=True, notify=notify)
    return status, in_flight
