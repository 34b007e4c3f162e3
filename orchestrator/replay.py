"""Replaying what an attempt's jobs delivered after its coordinator died: events -> row changes.

Both executor kinds' recoveries feed their events (from the run's stream, or the local pool's
journal) through one ``Replay``; it says what each event changes in the history (through
``orchestrator.db.rows``, the mapping the coordinator uses too) and keeps the job statuses moving
forward only, so a duplicate or a late copy changes nothing. ``status`` replays the same events in
memory to show what a resume would record, without writing or locking anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.db.recorder import AttemptRecorder
from orchestrator.db.rows import result_columns, started_columns
from orchestrator.executors.base import JobEnded, JobLost, TryEnded, TryStarted
from workers.spec import TryRecord
from workers.statuses import JOB_TRANSITIONS, EndReason, JobStatus, check_job_transition


@dataclass(slots=True)
class Change:
    """What one event changes: columns of the job's row, and tries to insert."""

    job_id: str
    columns: dict[str, Any] = field(default_factory=dict)
    tries: list[TryRecord] = field(default_factory=list)


class Replay:
    def __init__(self, statuses: dict[str, JobStatus]) -> None:
        self.statuses = dict(statuses)  # job -> status in the attempt's rows, moved forward here
        self.exit_codes: dict[str, int | None] = {}
        self.retries: dict[str, int] = {}

    def apply(self, event: Any) -> Change | None:
        job_id = getattr(event, "job_id", None)
        if job_id not in self.statuses:
            return None  # not a job of this attempt
        if isinstance(event, TryStarted):
            if not self._move(job_id, JobStatus.RUNNING):
                return None
            return Change(job_id, started_columns(event.worker, event.pid, event.at, first_start=True))
        if isinstance(event, TryEnded):
            return Change(job_id, tries=[event.record])
        if isinstance(event, JobEnded):
            result = event.result
            change = Change(job_id, tries=list(result.tries))
            if self._move(job_id, result.final.status):
                change.columns = result_columns(result, None)
                self.exit_codes[job_id] = result.final.exit_code
                self.retries[job_id] = max(0, result.final.try_number - 1)
            return change
        if isinstance(event, JobLost):  # an entry that could not be read: its try is lost
            if not self._move(job_id, JobStatus.ERROR):
                return None
            return Change(
                job_id,
                {"status": JobStatus.ERROR, "reason": EndReason.WORKER_LOST.value, "detail": event.reason},
            )
        return None

    def _move(self, job_id: str, status: JobStatus) -> bool:
        before = self.statuses[job_id]
        if before is JobStatus.PENDING:
            # An event from a runner proves the job was dispatched: the QUEUED update was in the
            # batch the dead coordinator never committed.
            before = check_job_transition(before, JobStatus.QUEUED)
        if status not in JOB_TRANSITIONS[before]:
            return False  # recorded before the crash, or a late duplicate: history moves forward only
        self.statuses[job_id] = check_job_transition(before, status)
        return True

    def unfinished(self) -> list[str]:
        return sorted(j for j, s in self.statuses.items() if not s.is_terminal)


def record(recorder: AttemptRecorder, change: Change | None) -> None:
    """Queue one replayed change in the recorder (the caller flushes)."""
    if change is None:
        return
    for t in change.tries:
        recorder.try_ended(change.job_id, t)
    if change.columns:
        recorder.job_update(change.job_id, **{k: v for k, v in change.columns.items() if v is not None})
