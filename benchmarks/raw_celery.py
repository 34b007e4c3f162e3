"""The baseline: what a user would write instead of Executioner — plain Celery running the same
subprocess task, Celery's defaults plus the two settings every guide gives for long jobs (acks late,
prefetch 1), results through a Redis backend (how a plain group learns it is done). Two variants:

- ``events=False`` (a): no task events at all (Celery's default);
- ``events=True`` (b): worker events (``-E``) and sent events on, as with Flower watching.

Nothing is copied from Executioner's own configuration: our costs must not be in both columns.
``python -m benchmarks.raw_celery worker ...`` starts its worker (``RAW_EVENTS=1`` for variant b).
"""

from __future__ import annotations

import os
import subprocess
import sys

from celery import Celery

QUEUES = {False: "raw", True: "raw_ev"}


def create_raw_app(broker: str, backend: str, events: bool = False) -> Celery:
    app = Celery("raw", broker=broker, backend=backend, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUES[events],
        worker_send_task_events=events,
        task_send_sent_event=events,
    )

    @app.task(name="raw.run")
    def run(command: str) -> int:
        return subprocess.run(["/bin/sh", "-c", command], capture_output=True).returncode

    return app


if __name__ == "__main__":
    events = os.environ.get("RAW_EVENTS") == "1"
    app = create_raw_app(os.environ["RAW_BROKER"], os.environ["RAW_BACKEND"], events)
    app.worker_main(["worker", *sys.argv[1:]])
