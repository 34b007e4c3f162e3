"""The one place that owns every status string and the transitions between them.

It lives in ``workers`` (the lower layer) because workers are deployed alone and must speak the same
vocabulary as the coordinator; ``orchestrator`` imports it from here. Nothing else in the code base
writes a status literal.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    PENDING = "PENDING"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"  # the process exited with a code other than 0
    ERROR = "ERROR"  # could not start, or the worker running it was lost
    TIMEOUT = "TIMEOUT"
    UPSTREAM_FAILED = "UPSTREAM_FAILED"
    SKIPPED = "SKIPPED"  # not run by this attempt's plan; see SkipReason
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL_JOB

    @property
    def is_failure(self) -> bool:
        """A failure of the job itself (what fails an attempt and what ``--failed-only`` re-runs)."""
        return self in FAILURE_STATUSES


class AttemptStatus(StrEnum):
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    PARTIAL = "PARTIAL"
    CANCELLED = "CANCELLED"
    INTERRUPTED = "INTERRUPTED"

    @property
    def is_terminal(self) -> bool:
        return self is not AttemptStatus.RUNNING


class SkipReason(StrEnum):
    ALREADY_SUCCEEDED = "already_succeeded"
    MARKED_SUCCESS = "marked_success"
    NOT_SELECTED = "not_selected"
    TRIGGER_RULE = "trigger_rule"  # its trigger rule was not met (orchestrator.trigger_rules)


class RunReason(StrEnum):
    """Why the planner decided a job runs in an attempt (stored as the row's ``reason`` until it ends)."""

    NEW_RUN = "new_run"
    SELECTED = "selected"  # named by --from-job, or a descendant of one
    NOT_SUCCEEDED = "not_succeeded"  # effective state was not SUCCESS
    FAILED_BEFORE = "failed_before"  # --failed-only picked it
    NEW_JOB = "new_job"  # added to the workflow since the last attempt
    CHANGED = "changed"  # --rerun-changed: its definition (or an ancestor's) changed
    ROLLED_BACK = "rolled_back"  # resume --from-job rolled it back


class EndReason(StrEnum):
    """Extra detail stored in ``reason`` for some terminal job statuses."""

    UPSTREAM = "upstream"  # UPSTREAM_FAILED: names the failed dependency separately
    INTERRUPTED = "interrupted"  # ERROR: the coordinator died while it was in flight
    WORKER_LOST = "worker_lost"  # ERROR: the worker running it stopped heart-beating
    USER_CANCELLED = "user_cancelled"


FAILURE_STATUSES = frozenset({JobStatus.FAILED, JobStatus.ERROR, JobStatus.TIMEOUT})
_TERMINAL_JOB = frozenset(
    {
        JobStatus.SUCCESS,
        JobStatus.FAILED,
        JobStatus.ERROR,
        JobStatus.TIMEOUT,
        JobStatus.UPSTREAM_FAILED,
        JobStatus.SKIPPED,
        JobStatus.CANCELLED,
    }
)
# A job that ended in one of these makes ``run``/``resume`` exit 1 (SPEC "Exit codes").
EXIT_1_JOB_STATUSES = frozenset({*FAILURE_STATUSES, JobStatus.UPSTREAM_FAILED})


def severity(status: str) -> str | None:
    """How a status reads to an operator: "bad" (something failed), "warn" (did not finish), None."""
    if status in FAILURE_STATUSES or status == AttemptStatus.INTERRUPTED or status == AttemptStatus.FAILED:
        return "bad"
    if status in (JobStatus.UPSTREAM_FAILED, JobStatus.CANCELLED, AttemptStatus.PARTIAL):
        return "warn"
    return None


# A try ends in one of these; a job's final status is its last try's.
TRY_STATUSES = frozenset({JobStatus.SUCCESS, *FAILURE_STATUSES, JobStatus.CANCELLED})

_J = JobStatus
JOB_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    _J.PENDING: frozenset({_J.QUEUED, _J.UPSTREAM_FAILED, _J.SKIPPED, _J.CANCELLED, _J.ERROR}),
    # QUEUED -> QUEUED/RUNNING -> QUEUED: a lost try re-dispatched under the job's retry policy.
    _J.QUEUED: frozenset({_J.QUEUED, _J.RUNNING, *TRY_STATUSES}),
    _J.RUNNING: frozenset({_J.RUNNING, _J.QUEUED, *TRY_STATUSES}),
    _J.SUCCESS: frozenset(),
    _J.FAILED: frozenset(),
    # ERROR (interrupted) may be corrected by a result its worker still delivered after the crash.
    _J.ERROR: frozenset({_J.SUCCESS, _J.FAILED, _J.TIMEOUT}),
    _J.TIMEOUT: frozenset(),
    _J.UPSTREAM_FAILED: frozenset(),
    _J.SKIPPED: frozenset(),
    _J.CANCELLED: frozenset(),
}

_A = AttemptStatus
ATTEMPT_TRANSITIONS: dict[AttemptStatus, frozenset[AttemptStatus]] = {
    _A.RUNNING: frozenset({_A.SUCCESS, _A.FAILED, _A.PARTIAL, _A.CANCELLED, _A.INTERRUPTED}),
    _A.SUCCESS: frozenset(),
    _A.FAILED: frozenset(),
    _A.PARTIAL: frozenset(),
    _A.CANCELLED: frozenset(),
    _A.INTERRUPTED: frozenset(),
}


class IllegalTransition(RuntimeError):
    pass


def check_job_transition(before: JobStatus, after: JobStatus) -> JobStatus:
    """Return ``after`` if a job row may move from ``before`` to it, else raise."""
    if after not in JOB_TRANSITIONS[before]:
        raise IllegalTransition(f"job status {before} -> {after} is not allowed")
    return after


def check_attempt_transition(before: AttemptStatus, after: AttemptStatus) -> AttemptStatus:
    if after not in ATTEMPT_TRANSITIONS[before]:
        raise IllegalTransition(f"attempt status {before} -> {after} is not allowed")
    return after


def attempt_outcome(*, all_success: bool, any_failure: bool, cancelled: bool = False) -> AttemptStatus:
    """The status an attempt ends with (SPEC "Statuses")."""
    if cancelled:
        return AttemptStatus.CANCELLED
    if any_failure:
        return AttemptStatus.FAILED
    if all_success:
        return AttemptStatus.SUCCESS
    return AttemptStatus.PARTIAL
