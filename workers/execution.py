"""What a Celery worker does with one delivered job: claim it, run it with heartbeats, report it.

The job itself runs through ``workers.runner.run_job``, the same function the local executor uses.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid

from workers.channel import Channel, Claim, Heartbeats
from workers.redis_client import connect
from workers.runner import CancelToken, RunnerHooks, run_job
from workers.settings import WorkerSettings
from workers.spec import JobTask

log = logging.getLogger("executioner.worker")


class WorkerRuntime:
    """Per worker process: its Redis connection, built lazily after the pool forked (never shared)."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self._pid: int | None = None
        self._channel: Channel | None = None
        self._heartbeats: Heartbeats | None = None
        self.base_env = dict(os.environb)

    @property
    def channel(self) -> Channel:
        if self._channel is None or self._pid != os.getpid():
            redis = connect(self.settings.broker_url)
            self._channel = Channel(redis, self.settings.heartbeat_ttl)
            self._pid = os.getpid()
        return self._channel

    @property
    def heartbeats(self) -> Heartbeats:
        channel = self.channel  # (re)built after a fork, with its heartbeat thread
        if self._heartbeats is None or self._heartbeats.channel is not channel:
            self._heartbeats = Heartbeats(channel, self.settings.heartbeat_interval)
        return self._heartbeats

    def execute(self, payload: dict, worker_name: str | None) -> dict:
        task = JobTask.from_dict(payload)
        worker = worker_name or socket.gethostname()
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
            on_try_end=lambda t, record, final: final or channel.try_ended(t, record),
            cancel=cancel,
            worker_name=worker,
            base_env=self.base_env,
        )

        def stop(why: str) -> None:
            log.warning("%s: stopping: %s", task.key, why)
            cancel.cancel()

        try:
            with self.heartbeats.watch(task, owner, stop):
                result = run_job(task, hooks)
            channel.ended(task, result, owner)
        finally:
            cancel.close()
        return {
            "job": task.key,
            "status": str(result.status),
            "exit_code": result.exit_code,
            "tries": len(result.tries),
        }
