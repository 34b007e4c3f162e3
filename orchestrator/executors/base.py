"""The executor interface both executors implement, and the events they hand the coordinator.

An executor runs jobs and reports what happened as events through ``sink``; it never decides what
runs next and holds no view of the run. The coordinator's loop owns the run's live state alone
(no finished-job sets shared across threads).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workers.spec import JobResult, JobTask, TryRecord


@dataclass(frozen=True, slots=True)
class TryStarted:
    job_id: str
    try_number: int
    worker: str
    pid: int | None
    at: float  # epoch seconds
    ack: Any = None  # what to acknowledge once recorded (Celery: a stream entry id)


@dataclass(frozen=True, slots=True)
class TryEnded:
    job_id: str
    record: TryRecord
    ack: Any = None


@dataclass(frozen=True, slots=True)
class JobEnded:
    job_id: str
    result: JobResult
    ack: Any = None


@dataclass(frozen=True, slots=True)
class JobLost:
    """The worker running a try stopped heart-beating: that try is recorded ERROR."""

    job_id: str
    try_number: int
    worker: str
    started_at: float
    reason: str


@dataclass(frozen=True, slots=True)
class CancelRequested:
    why: str


@dataclass(frozen=True, slots=True)
class ExecutorFailed:
    """The executor can deliver no more events (its reader or pool died): the coordinator stops."""

    reason: str


Event = TryStarted | TryEnded | JobEnded | JobLost | CancelRequested | ExecutorFailed
Sink = Callable[[Event], None]


def to_event(kind: str, job_id: str, first_try: int, body: dict, ack=None):
    """The one mapping from a wire event (a stream entry, a pool line, a journal line) to an event."""
    if kind == "started":
        return TryStarted(
            job_id, int(body["try"]), str(body["worker"]), body.get("pid"), float(body["at"]), ack
        )
    if kind == "try":
        return TryEnded(job_id, TryRecord.from_dict(body), ack=ack)
    return JobEnded(job_id, JobResult.from_dict(body), ack=ack)


class Executor(ABC):
    name: str
    # True if jobs submitted but not yet started are simply dropped by cancel() (they wait in a
    # broker): the coordinator then settles them itself instead of waiting for their events.
    withdraws_queued: bool = False
    label: str = ""  # the workflow's application_name (Celery: tasks show as "<label>.<job>")

    def dispatch_limit(self, parallel: int | None) -> int | None:
        """How many jobs the coordinator may keep submitted when ``parallel`` may run at once."""
        return parallel

    def dispatch_batch(self, limit: int | None) -> int:
        """How many free slots of ``limit`` make a dispatch worth a round trip (1: any free slot)."""
        return 1

    @abstractmethod
    def open(self, run_id: int, attempt_id: int, epoch: int, sink: Sink) -> None:
        """Get ready to run jobs of this attempt; events go to ``sink`` from any thread."""

    @abstractmethod
    def submit(self, task: JobTask) -> None:
        """Start ``task`` (the coordinator never submits more than its parallelism allows)."""

    @abstractmethod
    def cancel(self) -> None:
        """Stop every job in flight; each still ends with a ``JobEnded`` (CANCELLED)."""

    def flush(self) -> None:  # noqa: B027 - optional hook
        """Send what ``submit`` may have buffered (called after each batch of submits)."""

    def acknowledge(self, acks: list[Any]) -> None:  # noqa: B027 - optional hook
        """Called once the events carrying ``acks`` are safely in the history."""

    def withdraw(self, task: JobTask) -> bool:
        """Make sure a dispatched task that has not started never will; False if it started (or this
        executor cannot withdraw: the local pool starts what it is given)."""
        return False

    def consumers(self, queues: set[str]) -> set[str] | None:
        """Which of ``queues`` some worker consumes; None when this executor cannot tell."""
        return None

    def check(self) -> None:  # noqa: B027 - optional hook
        """Raise ``ServiceUnavailableError`` if the executor cannot run jobs (before anything is written)."""

    def failure(self) -> str | None:
        """Why this executor can deliver no more events (None: it can). Checked by the coordinator."""
        return None

    @abstractmethod
    def close(self, abandon: bool = False) -> None:
        """Release threads and connections (after the last event was received).

        ``abandon``: the coordinator stops without recording the rest (history unreachable): jobs
        still running are left to finish, their results kept (journal, stream) for ``resume``.
        """
