"""The baseline: plain Celery running the same subprocess task, with the same worker settings.

``python -m benchmarks.raw_celery worker ...`` starts its worker. The app is built by a factory from
the environment, like Executioner's, and copies the settings that matter for throughput from it.
"""

from __future__ import annotations

import os
import subprocess
import sys

from celery import Celery

from workers.celery_app import create_app
from workers.settings import WorkerSettings


def create_raw_app(broker: str, backend: str) -> Celery:
    ours = create_app(WorkerSettings(broker_url=broker)).conf
    app = Celery("raw", broker=broker, backend=backend, set_as_current=False)
    same = (
        "task_serializer",
        "result_serializer",
        "accept_content",
        "task_acks_late",
        "task_reject_on_worker_lost",
        "worker_prefetch_multiplier",
        "broker_transport_options",
        "worker_send_task_events",
        "task_send_sent_event",
        "task_track_started",
    )
    app.conf.update({key: ours[key] for key in same})  # the settings that matter, copied from ours
    app.conf.update(task_ignore_result=False, task_default_queue="raw")

    @app.task(name="raw.run")
    def run(command: str) -> int:
        return subprocess.run(["/bin/sh", "-c", command], capture_output=True).returncode

    return app


if __name__ == "__main__":
    create_raw_app(os.environ["RAW_BROKER"], os.environ["RAW_BACKEND"]).worker_main(["worker", *sys.argv[1:]])
