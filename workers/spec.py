"""What a worker is asked to run (``JobTask``) and what it reports back (``TryRecord``, ``JobResult``).

Plain dataclasses with JSON round-trips: the same objects travel through the local pool as Python
objects and through Celery/Redis as JSON (no pickle anywhere).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workers.retry import RetryPolicy
from workers.statuses import JobStatus
from workers.wire import WIRE_VERSION, WireError, known

OUTPUT_TAIL_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class JobTask:
    run_id: int
    attempt_id: int
    job_id: str
    command: str | tuple[str, ...]
    env: dict[str, Any] = field(default_factory=dict)  # str or {"from_env": NAME}
    working_dir: str | None = None
    timeout: float | None = None
    queue: str = "default"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Fencing token of the coordinator that dispatched it (see orchestrator.locks).
    epoch: int = 0
    # First try number this dispatch runs: >1 when the coordinator re-dispatches after a lost worker.
    first_try: int = 1
    # When the job's first try began (epoch seconds), carried across re-dispatches for max_retry_time.
    first_started_at: float | None = None
    # The history database's installation id: scopes the run's Redis keys (see workers.keys).
    scope: str = ""

    @property
    def key(self) -> str:
        """Stable name of one job of one attempt (task ids, Redis keys, log lines)."""
        return f"{self.run_id}.{self.attempt_id}.{self.job_id}"

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "attempt_id": self.attempt_id,
            "job_id": self.job_id,
            "command": list(self.command) if isinstance(self.command, tuple) else self.command,
            "env": dict(self.env),
            "working_dir": self.working_dir,
            "timeout": self.timeout,
            "queue": self.queue,
            "retry": self.retry.to_dict(),
            "epoch": self.epoch,
            "first_try": self.first_try,
            "first_started_at": self.first_started_at,
            "scope": self.scope,
            "v": WIRE_VERSION,
        }

    @classmethod
    def from_dict(cls, data: dict) -> JobTask:
        """Tolerant of unknown fields; ``WireError`` names what makes a payload unusable."""
        try:
            return cls._from_dict(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise WireError(f"bad task payload: {exc!r}"[:200]) from None

    @classmethod
    def _from_dict(cls, data: dict) -> JobTask:
        command = data["command"]
        return cls(
            run_id=int(data["run_id"]),
            attempt_id=int(data["attempt_id"]),
            job_id=str(data["job_id"]),
            command=tuple(command) if isinstance(command, list) else command,
            env=dict(data.get("env") or {}),
            working_dir=data.get("working_dir"),
            timeout=data.get("timeout"),
            queue=data.get("queue", "default"),
            retry=RetryPolicy.from_dict(data.get("retry") or {}),
            epoch=int(data.get("epoch", 0)),
            first_try=int(data.get("first_try", 1)),
            first_started_at=data.get("first_started_at"),
            scope=str(data.get("scope", "")),
        )


@dataclass(slots=True)
class TryRecord:
    """One try of one job: every try is recorded, the successful one included."""

    try_number: int
    status: JobStatus
    exit_code: int | None
    start_time: float  # epoch seconds
    end_time: float
    worker: str
    delay_before: float = 0.0
    error: str | None = None  # why it could not start / was killed, in words
    pid: int | None = None
    stdout_tail: str = ""
    stderr_tail: str = ""
    log_uri: str | None = None  # the full output in the log store (workers.logstore)
    stdout_bytes: int = 0  # the streams' whole sizes (the tails keep the last 64 KiB)
    stderr_bytes: int = 0

    @property
    def duration(self) -> float:
        return max(0.0, self.end_time - self.start_time)

    def to_dict(self) -> dict:
        # Explicit rather than dataclasses.asdict: it deep-copies, and this runs for every try.
        return {
            "try_number": self.try_number,
            "status": str(self.status),
            "exit_code": self.exit_code,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "worker": self.worker,
            "delay_before": self.delay_before,
            "error": self.error,
            "pid": self.pid,
            "stdout_tail": self.stdout_tail,
            "stderr_tail": self.stderr_tail,
            "log_uri": self.log_uri,
            "stdout_bytes": self.stdout_bytes,
            "stderr_bytes": self.stderr_bytes,
        }

    @classmethod
    def from_dict(cls, data: dict) -> TryRecord:
        """Tolerant: fields a newer worker added are ignored (see ``workers.wire``)."""
        try:
            return cls(**{**known(cls, data), "status": JobStatus(data["status"])})
        except (KeyError, TypeError, ValueError) as exc:
            raise WireError(f"bad try record: {exc!r}"[:200]) from None


@dataclass(slots=True)
class JobResult:
    """The outcome of one dispatch of a job: its tries, the last one deciding the status."""

    run_id: int
    attempt_id: int
    job_id: str
    tries: list[TryRecord]
    epoch: int = 0

    @property
    def final(self) -> TryRecord:
        return self.tries[-1]

    @property
    def status(self) -> JobStatus:
        return self.final.status

    @property
    def exit_code(self) -> int | None:
        return self.final.exit_code

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "attempt_id": self.attempt_id,
            "job_id": self.job_id,
            "epoch": self.epoch,
            "tries": [t.to_dict() for t in self.tries],
        }

    @classmethod
    def from_dict(cls, data: dict) -> JobResult:
        if not data.get("tries"):
            raise WireError("a job result without tries")
        return cls(
            run_id=int(data["run_id"]),
            attempt_id=int(data["attempt_id"]),
            job_id=str(data["job_id"]),
            epoch=int(data.get("epoch", 0)),
            tries=[TryRecord.from_dict(t) for t in data["tries"]],
        )
