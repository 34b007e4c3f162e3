"""An executor that runs nothing: outcomes come from a function. For tests of everything above it.

It reports synchronously, in the order a real executor would (started, try ended, job ended), so a
test of the coordinator is deterministic and needs no processes, threads or sleeps.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from orchestrator.executors.base import Executor, JobEnded, Sink, TryEnded, TryStarted
from workers.spec import JobResult, JobTask, TryRecord
from workers.statuses import JobStatus

Outcome = tuple[JobStatus, int | None]


def _succeed(task: JobTask) -> Outcome:
    return JobStatus.SUCCESS, 0


class StubExecutor(Executor):
    name = "stub"

    def __init__(self, outcome: Callable[[JobTask], Outcome] = _succeed, worker: str = "stub") -> None:
        self.outcome = outcome
        self.worker = worker
        self.submitted: list[JobTask] = []
        self.cancelled = False
        self.closed = False
        self._sink: Sink | None = None

    def open(self, run_id: int, attempt_id: int, epoch: int, sink: Sink) -> None:
        self._sink = sink

    def submit(self, task: JobTask) -> None:
        self.submitted.append(task)
        now = time.time()
        self._sink(TryStarted(task.job_id, task.first_try, self.worker, None, now))
        status, code = (JobStatus.CANCELLED, None) if self.cancelled else self.outcome(task)
        record = TryRecord(task.first_try, status, code, now, time.time(), self.worker)
        self._sink(TryEnded(task.job_id, record))
        self._sink(JobEnded(task.job_id, JobResult(task.run_id, task.attempt_id, task.job_id, [record])))

    def cancel(self) -> None:
        self.cancelled = True

    def close(self, abandon: bool = False) -> None:
        self.closed = True
