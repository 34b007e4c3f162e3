"""Redis key and stream names shared by workers and the coordinator: one place, one spelling."""

from __future__ import annotations

PREFIX = "executioner"
EVENT_GROUP = "coordinators"  # the consumer group coordinators read a run's event stream with
DONE = "done"  # lease value once a dispatch finished: a redelivered copy must not run it again
LOST = "lost"  # lease value once the coordinator declared a dispatch lost: its late copy is discarded


def events(run_id: int) -> str:
    """The run's event stream: workers append try/job events, the coordinator reads and acks them."""
    return f"{PREFIX}:events:{run_id}"


def epoch(run_id: int) -> str:
    """The run's current fencing token, mirrored from SQL by the coordinator that holds the run."""
    return f"{PREFIX}:epoch:{run_id}"


def lease(run_id: int, attempt_id: int, job_id: str, first_try: int) -> str:
    """Held by the worker running one dispatch of a job, renewed as its heartbeat."""
    return f"{PREFIX}:lease:{run_id}:{attempt_id}:{job_id}:{first_try}"


def cancel(run_id: int, attempt_id: int) -> str:
    return f"{PREFIX}:cancel:{run_id}:{attempt_id}"


def task_id(run_id: int, attempt_id: int, job_id: str, first_try: int) -> str:
    """Celery task ids name the job, so Flower and the broker's keys show which job is which."""
    return f"run{run_id}.a{attempt_id}.{job_id}.t{first_try}"
