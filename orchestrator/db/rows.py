"""The one mapping from what a worker reports to the columns of a job's row in ``job_runs``.

The coordinator (live) and crash recovery (afterwards, from a stream or a journal) both record
through these functions, so a job's row says the same whichever of them saw its end.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from workers.spec import JobResult
from workers.statuses import JobStatus


def ts(epoch_seconds: float | None) -> datetime | None:
    return None if epoch_seconds is None else datetime.fromtimestamp(epoch_seconds, UTC)


def started_columns(worker: str, pid: int | None, at: float, first_start: bool) -> dict[str, Any]:
    """A try began. ``first_start``: the job's first try of the attempt (its row's start time)."""
    columns: dict[str, Any] = {"status": JobStatus.RUNNING, "worker": worker, "pid": pid}
    if first_start:
        columns["start_time"] = ts(at)
    return columns


def ended_columns(
    status: JobStatus,
    *,
    exit_code: int | None,
    try_number: int,
    first_started_at: float | None,
    end_time: float,
    worker: str,
    reason: str | None = None,
    detail: str | None = None,
) -> dict[str, Any]:
    """The job's end: its last try decides; times span from its first try's start."""
    return {
        "status": status,
        "exit_code": exit_code,
        "retry_count": max(0, try_number - 1),
        "start_time": ts(first_started_at),
        "end_time": ts(end_time),
        "duration": None if first_started_at is None else max(0.0, end_time - first_started_at),
        "worker": worker,
        **({"reason": str(reason)} if reason else {}),
        **({"detail": detail} if detail else {}),
    }


def result_columns(result: JobResult, first_started_at: float | None) -> dict[str, Any]:
    """``ended_columns`` of a dispatch's result (its first try started the job unless one before did)."""
    final = result.final
    first = first_started_at if first_started_at is not None else result.tries[0].start_time
    return ended_columns(
        final.status,
        exit_code=final.exit_code,
        try_number=final.try_number,
        first_started_at=first,
        end_time=final.end_time,
        worker=final.worker,
        detail=final.error,
    )
