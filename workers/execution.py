"""What a Celery worker does with one delivered job: claim it, run it with heartbeats, report it.

The job itself runs through ``workers.runner.run_job``, the same function the local executor uses.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid

from workers.channel import Channel, Claim, Heartbeats, OutputFeed
from workers.reaper import Reaper
from workers.redis_client import connect
from workers.runner import CancelToken, RunnerHooks, run_job
from workers.secrets import secret_patterns
from workers.settings import WorkerSettings
from workers.signing import verify
from workers.spec import JobResult, JobTask, TryRecord
from workers.statuses import JobStatus
from workers.wire import WireError

log = logging.getLogger("executioner.worker")


def _error_result(task: JobTask, worker: str, reason: str) -> JobResult:
    now = time.time()
    record = TryRecord(task.first_try, JobStatus.ERROR, None, now, now, worker, error=reason)
    return JobResult(task.run_id, task.attempt_id, task.job_id, [record], task.epoch)


def _retried(channel: Channel, task: JobTask, record, on_retry) -> None:
    channel.try_ended(task, record)
    if on_retry is not None:
        on_retry(record)


class WorkerRuntime:
    """Per worker process: its Redis connection, built lazily after the pool forked (never shared)."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self._pid: int | None = None
        self._channel: Channel | None = None
        self._heartbeats: Heartbeats | None = None
        self._reaper: Reaper | None = None
        self._reaper_pid: int | None = None
        self.base_env = dict(os.environb)
        self.secret_patterns = secret_patterns()  # read once per worker, not per task
        self.log_store = settings.make_log_store()

    @property
    def channel(self) -> Channel:
        if self._channel is None or self._pid != os.getpid():
            redis = connect(self.settings.broker_url)
            self._channel = Channel(redis, self.settings.heartbeat_ttl)
            self._pid = os.getpid()
        return self._channel

    @property
    def reaper(self) -> Reaper:
        """Per worker process (after the pool forked): it adopts its jobs' orphans."""
        if self._reaper is None or self._reaper_pid != os.getpid():  # prctl is not inherited by fork
            self._reaper, self._reaper_pid = Reaper(), os.getpid()
        return self._reaper

    @property
    def heartbeats(self) -> Heartbeats:
        channel = self.channel  # (re)built after a fork, with its heartbeat thread
        if self._heartbeats is None or self._heartbeats.channel is not channel:
            self._heartbeats = Heartbeats(channel, self.settings.heartbeat_interval)
        return self._heartbeats

    def execute(self, payload: dict, worker_name: str | None, on_retry=None) -> dict:
        worker = worker_name or socket.gethostname()
        try:
            verify(payload, self.settings.secret_key)
            task = JobTask.from_dict(payload)
        except WireError as exc:
            return self._refuse(str(exc))
        channel = self.channel
        owner = f"{worker}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        claim = channel.claim(task, owner, worker)
        if claim != Claim.RUN:
            # A redelivered copy of a job running or done elsewhere, a dispatch superseded after a lost
            # worker, or one from a coordinator that no longer holds the run: never a second run.
            log.info("%s: not run (%s)", task.key, claim)
            return {"job": task.key, "discarded": claim}
        cancel = CancelToken()
        hooks = RunnerHooks(
            # The first try's start went out with the claim; retries announce theirs.
            on_try_start=lambda t, n, pid, at: n != t.first_try and channel.started(t, n, worker, pid, at),
            on_try_end=lambda t, record, final: final or _retried(channel, t, record, on_retry),
            cancel=cancel,
            reaper=self.reaper,
            worker_name=worker,
            base_env=self.base_env,
            secret_patterns=self.secret_patterns,
            log_store=self.log_store,
            on_output=OutputFeed(channel.redis),  # `logs --follow` from any machine
        )

        def stop(why: str) -> None:
            log.warning("%s: stopping: %s", task.key, why)
            cancel.cancel()

        try:
            with self.heartbeats.watch(task, owner, stop):
                try:
                    result = run_job(task, hooks)
                except Exception as exc:  # report it now, not 20 s later as a lost heartbeat
                    log.exception("%s: the runner failed", task.key)
                    result = _error_result(task, worker, f"runner failed: {exc!r}"[:300])
            channel.ended(task, result, owner)
        finally:
            cancel.close()
        return {
            "job": task.key,
            "status": str(result.status),
            "exit_code": result.exit_code,
            "tries": len(result.tries),
        }

    @staticmethod
    def _refuse(reason: str) -> dict:
        """Never run it, and report nothing to any run: a forged task may name a real run's job, and
        an attacker who can only send tasks (a Flower login) must not be able to end that job."""
        log.error("task refused: %s", reason)
        return {"refused": reason}
