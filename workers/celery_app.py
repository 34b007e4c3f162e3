"""The Celery app, built by a factory from settings (no module-level app, no hidden config)."""

from __future__ import annotations

import contextlib

from celery import Celery
from celery.app.amqp import AMQP

from workers.execution import WorkerRuntime
from workers.settings import WorkerSettings

TASK_NAME = "executioner.run_job"
DEFAULT_QUEUE = "default"
FAILED = ("FAILED", "ERROR", "TIMEOUT")


class JobFailed(Exception):
    """The job ended FAILED/ERROR/TIMEOUT: the task fails too (an expected error: no traceback)."""


def _retried_event(task):
    """A try that failed and is retried in the worker: a ``task-retried`` event, so Flower shows it."""

    def send(record) -> None:
        detail = record.error or f"exit {record.exit_code}"
        with contextlib.suppress(Exception):  # an event is a courtesy: never let it disturb the job
            task.send_event(
                "task-retried", exception=f"try {record.try_number} {record.status} ({detail})", traceback=""
            )

    return send


class _AMQP(AMQP):
    """Celery's message factory, with the ``task-sent`` event carrying the task's shadow name too:
    Flower merges sent and received events in whatever order they arrive, and the received one names
    the task by its shadow — so both must, or a job shows as ``executioner.run_job`` at random."""

    def as_task_v2(self, task_id, name, *args, **kwargs):
        message = super().as_task_v2(task_id, name, *args, **kwargs)
        shadow = message.headers.get("shadow")  # Celery passes it positionally
        if shadow and message.sent_event is not None:
            message.sent_event["name"] = shadow
        return message


def create_app(settings: WorkerSettings | None = None) -> Celery:
    settings = settings or WorkerSettings.from_env()
    if not settings.broker_url:
        raise ValueError("a broker URL is needed: set EXECUTIONER_BROKER_URL")
    app = Celery(
        "executioner",
        broker=settings.broker_url,
        backend=settings.result_backend,
        set_as_current=False,
        amqp=_AMQP,
    )
    app.conf.update(
        # JSON only: no pickle on the wire.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # A job is acknowledged once it finished; a worker lost mid-job gives it back. The lease in
        # workers.channel keeps such a second delivery from starting a second process.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # Redis hands an unacknowledged task to another worker after this many seconds: above the
        # longest job x tries + delays the workers will run (EXECUTIONER_VISIBILITY_TIMEOUT).
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        task_default_queue=DEFAULT_QUEUE,
        # No task events unless someone watches: Flower switches the workers' events on when it
        # starts and every few seconds after (``executioner flower`` also asks at once), then sees
        # each job from the moment a worker receives it (received, started, retried, succeeded or
        # failed; named <application>.<job>). Jobs still waiting in a queue are not in Flower:
        # `status` shows them. Events cost ~30% of the throughput of short jobs (BENCHMARKS.md), and
        # the run's own stream already carries "started" and every result.
        worker_send_task_events=False,
        task_send_sent_event=False,
        task_track_started=False,
        # Results travel on the run's event stream; a result backend is only for Flower's views.
        task_ignore_result=settings.result_backend is None,
        # Survive a broker restart while publishing (about a minute of patience).
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 30,
            "interval_start": 0.2,
            "interval_step": 0.5,
            "interval_max": 2.0,
        },
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        enable_utc=True,
    )
    runtime = WorkerRuntime(settings)

    @app.task(name=TASK_NAME, bind=True, throws=(JobFailed,))
    def run_job(self, payload: dict) -> dict:
        result = runtime.execute(payload, self.request.hostname, _retried_event(self))
        if result.get("status") in FAILED:
            # The task's state follows the job's (Flower shows it FAILURE). Raised once the result is
            # on the run's stream; acknowledged all the same (acks_late acks failures): never re-queued.
            raise JobFailed(
                f"{result['status']} exit {result.get('exit_code')} after {result['tries']} tries"
            )
        return result

    app.executioner_runtime = runtime
    return app
