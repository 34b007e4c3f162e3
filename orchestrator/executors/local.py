"""The embedded default: a thread pool inside the coordinator runs ``workers.runner.run_job``."""

from __future__ import annotations

import os
import queue
import socket
import threading
import time

from orchestrator.executors.base import Executor, JobEnded, Sink, TryEnded, TryStarted
from workers.runner import CancelToken, RunnerHooks, run_job
from workers.spec import JobResult, JobTask, TryRecord
from workers.statuses import JobStatus


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, max_workers: int) -> None:
        self.max_workers = max_workers
        # A plain queue and threads rather than concurrent.futures: no Future per job, no result.
        self._queue: queue.SimpleQueue[JobTask | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._cancel: CancelToken | None = None
        self._sink: Sink | None = None
        self._hooks: RunnerHooks | None = None

    def dispatch_limit(self, parallel: int | None) -> int | None:
        # A small backlog in the pool's queue: a thread that finishes a job starts the next at once
        # instead of idling while the coordinator hears of it. Still at most ``parallel`` running.
        return None if parallel is None else 2 * parallel

    def open(self, run_id: int, attempt_id: int, epoch: int, sink: Sink) -> None:
        self._sink = sink
        self._cancel = CancelToken()
        self._threads = []  # started as jobs arrive: a huge --max-parallel costs nothing up front
        self._hooks = RunnerHooks(
            on_try_start=lambda task, n, pid, at: sink(
                TryStarted(task.job_id, n, self._hooks.worker_name, pid, at)
            ),
            # The last try comes with JobEnded: one event less per job.
            on_try_end=lambda task, record, final: final or sink(TryEnded(task.job_id, record)),
            cancel=self._cancel,
            worker_name=socket.gethostname(),
            base_env=dict(os.environb),
        )

    def submit(self, task: JobTask) -> None:
        assert self._cancel is not None, "open() first"
        if len(self._threads) < self.max_workers:
            # The coordinator keeps at most 2 x parallel submitted: threads never outnumber the jobs.
            thread = threading.Thread(
                target=self._work, name=f"executioner-job-{len(self._threads)}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        self._queue.put(task)

    def _work(self) -> None:
        while (task := self._queue.get()) is not None:
            self._run(task)

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
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()
        self._threads = []
        if self._cancel is not None:
            self._cancel.close()
            self._cancel = None
