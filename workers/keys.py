"""Redis key and stream names shared by workers and the coordinator: one place, one spelling."""

from __future__ import annotations

PREFIX = "executioner"
EVENT_GROUP = "coordinators"  # the consumer group coordinators read a run's event stream with
DONE = "done"  # lease value once a dispatch finished: a redelivered copy must not run it again
LOST = "lost"  # lease value once the coordinator declared a dispatch lost: its late copy is discarded


# Every key of a run is scoped by the history database it lives in (its installation id): two
# deployments, or a database recreated from scratch, can share one Redis without their run 1 colliding.


def events(scope: str, run_id: int) -> str:
    """The run's event stream: workers append try/job events, the coordinator reads and acks them."""
    return f"{PREFIX}:{scope}:events:{run_id}"


def epoch(scope: str, run_id: int) -> str:
    """The run's current fencing token, mirrored from SQL by the coordinator that holds the run."""
    return f"{PREFIX}:{scope}:epoch:{run_id}"


def lease(scope: str, run_id: int, attempt_id: int, job_id: str, first_try: int) -> str:
    """Held by the worker running one dispatch of a job, renewed as its heartbeat."""
    return f"{PREFIX}:{scope}:lease:{run_id}:{attempt_id}:{job_id}:{first_try}"


def lease_pattern(scope: str, run_id: int, attempt_id: int) -> str:
    return f"{PREFIX}:{scope}:lease:{run_id}:{attempt_id}:*"


def cancel(scope: str, run_id: int, attempt_id: int) -> str:
    return f"{PREFIX}:{scope}:cancel:{run_id}:{attempt_id}"


def run_lock(scope: str, run_id: int) -> str:
    return f"{PREFIX}:{scope}:run:{run_id}"  # pottery stores it as "redlock:<key>"


def run_holder(scope: str, run_id: int) -> str:
    return f"{PREFIX}:{scope}:holder:{run_id}"


def task_id(run_id: int, attempt_id: int, job_id: str, first_try: int) -> str:
    """Celery task ids name the job, so Flower and the broker's keys show which job is which."""
    return f"run{run_id}.a{attempt_id}.{job_id}.t{first_try}"


def output(scope: str, run_id: int, attempt_id: int, job_id: str, try_number: int) -> str:
    """A running try's output, chunk by chunk, while someone follows it (``logs --follow``)."""
    return f"{PREFIX}:{scope}:output:{run_id}:{attempt_id}:{job_id}:{try_number}"


def follower(scope: str, run_id: int, attempt_id: int, job_id: str) -> str:
    """Set (with a short TTL) while a ``logs --follow`` reads a job: only then do workers publish."""
    return f"{PREFIX}:{scope}:follow:{run_id}:{attempt_id}:{job_id}"
