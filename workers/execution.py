"""What a Celery worker does with one delivered job: claim it, run it with heartbeats, report it.

The job itself runs through ``workers.runner.run_job``, the same function the local executor uses.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid

from redis.exceptions import RedisError

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


def _announce(channel: Channel, task: JobTask, n: int, worker: str, pid: int, at: float) -> None:
    """A retry's start, on the short-timeout channel and tried once: the try runs unsupervised until
    this returns, so it must not wait out a cut link (the try's end carries the same facts)."""
    try:
        channel.started(task, n, worker, pid, at, patience=0.0)
    except RedisError as exc:
        log.warning("%s: start of try %d not announced (%s)", task.key, n, exc)


class WorkerRuntime:
    """Per worker process: its Redis connection, built lazily after the pool forked (never shared)."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self._pid: int | None = None
        self._channel: Channel | None = None
        self._beat_channel: Channel | None = None  # short timeouts: heartbeats and live output
        self._heartbeats: Heartbeats | None = None
        self._reaper: Reaper | None = None
        self._reaper_pid: int | None = None
        self.base_env = dict(os.environb)
        self.secret_patterns = secret_patterns()  # read once per worker, not per task
        self.log_store = settings.make_log_store()

    @property
    def channel(self) -> Channel:
        if self._channel is None or self._pid != os.getpid():
            ttl = self.settings.heartbeat_ttl
            self._channel = Channel(connect(self.settings.broker_url), ttl)
            # Its own connection, every call bounded: a cut link must not hold the heartbeat thread
            # (or a job's supervising loop) past the moment the job has to be stopped.
            beat = connect(self.settings.broker_url, timeout=self.settings.lease_timing.io_timeout)
            self._beat_channel = Channel(beat, ttl)
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
        _ = self.channel  # (re)built after a fork, with its heartbeat thread
        if self._heartbeats is None or self._heartbeats.channel is not self._beat_channel:
            self._heartbeats = Heartbeats(self._beat_channel, self.settings.lease_timing)
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
        claimed_at = time.monotonic()  # the lease runs from no earlier than this
        claim = channel.claim(task, owner, worker)
        if claim != Claim.RUN:
            # A redelivered copy of a job running or done elsewhere, a dispatch superseded after a lost
            # worker, or one from a coordinator that no longer holds the run: never a second run.
            log.info("%s: not run (%s)", task.key, claim)
            return {"job": task.key, "discarded": claim}
        cancel = CancelToken()
        timing = self.settings.lease_timing
        hooks = RunnerHooks(
            # The first try's start went out with the claim; retries announce theirs.
            on_try_start=lambda t, n, pid, at: (
                n != t.first_try and _announce(self._beat_channel, t, n, worker, pid, at)
            ),
            on_try_end=lambda t, record, final: final or _retried(channel, t, record, on_retry),
            cancel=cancel,
            reaper=self.reaper,
            worker_name=worker,
            base_env=self.base_env,
            secret_patterns=self.secret_patterns,
            log_store=self.log_store,
            on_output=OutputFeed(self._beat_channel.redis),  # `logs --follow` from any machine
        )
        gave_up: list[str] = []

        def stop(why: str, status: JobStatus) -> None:
            log.warning("%s: stopping: %s", task.key, why)
            if status is JobStatus.ERROR:  # the lease is, or may soon be, someone else's
                gave_up.append(why)
            cancel.cancel(why, status, grace=timing.grace if status is JobStatus.ERROR else None)

        try:
            with self.heartbeats.watch(task, owner, stop, claimed_at):
                try:
                    result = run_job(task, hooks)
                except Exception as exc:  # report it now, not 20 s later as a lost heartbeat
                    log.exception("%s: the runner failed", task.key)
                    result = _error_result(task, worker, f"runner failed: {exc!r}"[:300])
            if gave_up:
                # Not ours to end: the coordinator declares the try lost once the lease is gone and
                # applies the job's retry policy, exactly as for a worker that died.
                return {"job": task.key, "gave_up": gave_up[0]}
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
