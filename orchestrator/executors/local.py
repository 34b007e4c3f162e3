"""The embedded default: a thread pool inside the coordinator runs ``workers.runner.run_job``."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

from orchestrator.executors.base import Executor, JobEnded, Sink, TryEnded, TryStarted
from workers.runner import CancelToken, RunnerHooks, run_job
from workers.spec import JobResult, JobTask, TryRecord
from workers.statuses import JobStatus


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, max_workers: int) -> None:
        self.max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None
        self._cancel: CancelToken | None = None
        self._sink: Sink | None = None
        self._hooks: RunnerHooks | None = None

    def open(self, run_id: int, attempt_id: int, epoch: int, sink: Sink) -> None:
        self._sink = sink
        self._cancel = CancelToken()
        self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="executioner-job")
        self._hooks = RunnerHooks(
            on_try_start=lambda task, n, pid, at: sink(
                TryStarted(task.job_id, n, self._hooks.worker_name, pid, at)
            ),
            on_try_end=lambda task, record: sink(TryEnded(task.job_id, record)),
            cancel=self._cancel,
            worker_name=socket.gethostname(),
        )

    def submit(self, task: JobTask) -> None:
        assert self._pool is not None, "open() first"
        self._pool.submit(self._run, task)

    def _run(self, task: JobTask) -> None:
        try:
            result = run_job(task, self._hooks)
        except Exception as exc:  # never lose the event: the coordinator would wait forever
            now = time.time()
            record = TryRecord(
                task.first_try,
                JobStatus.ERROR,
                None,
                now,
                now,
                self._hooks.worker_name,
                error=f"runner failed: {exc!r}",
            )
            result = JobResult(task.run_id, task.attempt_id, task.job_id, [record], task.epoch)
        self._sink(JobEnded(task.job_id, result))

    def cancel(self) -> None:
        if self._cancel is not None:
            self._cancel.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._cancel is not None:
            self._cancel.close()
            self._cancel = None
