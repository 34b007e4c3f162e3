"""A run's effective job states, derived (never stored) from its history: pure, no I/O.

The effective state of a job is its latest outcome across attempts, with ``mark-success`` and
``rollback`` applied in order. Manual actions happen only while no coordinator holds the run, so they
sit *between* attempts: each audit record carries the attempt it came after, which orders it without
trusting wall clocks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from operator import itemgetter
from typing import NamedTuple

from workers.statuses import EXIT_1_JOB_STATUSES, AttemptStatus, JobStatus, attempt_outcome


class AuditAction(StrEnum):
    MARK_SUCCESS = "mark_success"
    ROLLBACK = "rollback"
    CANCEL = "cancel"  # a request to stop an attempt (``attempt_id``): no effect on job states


@dataclass(frozen=True, slots=True)
class JobState:
    status: JobStatus = JobStatus.PENDING
    attempt_id: int | None = None
    exit_code: int | None = None
    retry_count: int = 0
    marked: bool = False

    @property
    def is_success(self) -> bool:
        return self.status is JobStatus.SUCCESS

    def as_dict(self) -> dict:
        return {
            "status": str(self.status),
            "attempt_id": self.attempt_id,
            "exit_code": self.exit_code,
            "retry_count": self.retry_count,
            "marked": self.marked,
        }


PENDING = JobState()


class JobRowFact(NamedTuple):
    """What one attempt's job row says (the part the fold needs). A tuple: the history's rows are
    folded as they come from the query (100,000 of them), no object made for each first."""

    attempt_id: int
    job_id: str
    status: JobStatus | str  # a JobStatus or its value
    exit_code: int | None = None
    retry_count: int | None = 0


@dataclass(frozen=True, slots=True)
class AuditFact:
    after_attempt: int  # applied after this attempt's rows and before the next attempt's
    seq: int  # order among actions after the same attempt
    action: AuditAction
    job_ids: tuple[str, ...]
    attempt_id: int | None = None  # set when an attempt did it (--from-job), None for manual actions


# Rows that say nothing about a job's outcome: SKIPPED by definition, PENDING because the attempt
# planned the job but never started it (an interrupted attempt leaves these).
_NOT_AN_OUTCOME = frozenset({JobStatus.SKIPPED, JobStatus.PENDING})


class RunState:
    """Effective states by job id; a job never mentioned is PENDING."""

    def __init__(self, jobs: dict[str, JobState] | None = None) -> None:
        self.jobs = jobs or {}

    def __getitem__(self, job_id: str) -> JobState:
        return self.jobs.get(job_id, PENDING)

    def is_success(self, job_id: str) -> bool:
        return self[job_id].status is JobStatus.SUCCESS

    def with_changes(self, changes: dict[str, JobState]) -> RunState:
        return RunState({**self.jobs, **changes})


def derive_state(rows: Iterable[JobRowFact], audits: Iterable[AuditFact]) -> RunState:
    status_of = JobStatus._value2member_map_  # a dict lookup: Enum's constructor is slow over 100,000
    pending_audits = sorted(audits, key=lambda a: (a.after_attempt, a.seq))
    jobs: dict[str, JobState] = {}
    i, current = 0, None
    for attempt_id, job_id, status, exit_code, retry_count in sorted(rows, key=itemgetter(0)):
        if attempt_id != current:  # the first row of an attempt: the actions taken before it
            current = attempt_id
            while i < len(pending_audits) and pending_audits[i].after_attempt < attempt_id:
                apply_audit(jobs, pending_audits[i])
                i += 1
        if status not in _NOT_AN_OUTCOME:
            jobs[job_id] = JobState(status_of[status], attempt_id, exit_code, retry_count or 0)
    for audit in pending_audits[i:]:
        apply_audit(jobs, audit)
    return RunState(jobs)


def apply_audit(jobs: dict[str, JobState], audit: AuditFact) -> None:
    if audit.action is AuditAction.CANCEL:
        return  # the attempt it stopped recorded what it did to each job
    for job_id in audit.job_ids:
        if audit.action is AuditAction.MARK_SUCCESS:
            jobs[job_id] = JobState(JobStatus.SUCCESS, audit.attempt_id, marked=True)
        else:
            jobs[job_id] = PENDING


def derived_run_status(
    last_status: str, state: RunState, job_ids: Iterable[str], manual_after_last: bool
) -> str:
    """A run's status (SPEC, Statuses): its last attempt's, until a mark-success or rollback comes
    after that attempt; then derived from the effective states of the workflow's jobs."""
    if not manual_after_last or last_status == AttemptStatus.RUNNING:
        return last_status
    statuses = [state[j].status for j in job_ids]
    return str(
        attempt_outcome(
            all_success=all(s is JobStatus.SUCCESS for s in statuses),
            any_failure=any(s in EXIT_1_JOB_STATUSES for s in statuses),
        )
    )
