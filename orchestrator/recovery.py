"""Recovering an attempt whose Celery coordinator died: record what its workers still delivered.

Called holding the run's lock (so the old coordinator is gone and fenced out), before the attempt is
marked INTERRUPTED. Jobs the old coordinator had dispatched keep running on the workers; their events
wait in the run's stream. Recovery first publishes the new epoch (queued copies of the old attempt
are then discarded when a worker picks them up), records every event of the old attempt, and, when
asked to wait, follows the jobs still running (live leases) until they end or their worker is lost.
No job is recorded twice (idempotent tries, legal transitions only) and none is lost.
"""

from __future__ import annotations

from collections.abc import Callable

from redis import Redis
from sqlalchemy import select

from orchestrator.context import Context
from orchestrator.db.engine import read_tx
from orchestrator.db.recorder import AttemptRecorder, ts
from orchestrator.db.schema import job_runs
from orchestrator.executors.celery import publish_epoch
from orchestrator.executors.stream import Entry, acknowledge, consumer_name, ensure_group, read_batch
from orchestrator.locks.base import RunLock
from workers import keys
from workers.spec import JobResult, TryRecord
from workers.statuses import JOB_TRANSITIONS, JobStatus, check_job_transition


def recover_celery_attempt(
    ctx: Context,
    run_id: int,
    attempt_id: int,
    lock: RunLock,
    *,
    wait: bool,
    notify: Callable[[list[str]], None] | None = None,
) -> bool:
    """Record delivered results; True once none of the attempt's jobs is still running anywhere."""
    redis = Redis.from_url(ctx.settings.broker_url, socket_timeout=30)
    try:
        return _Recovery(ctx, redis, run_id, attempt_id, lock).run(wait, notify)
    finally:
        redis.close()


class _Recovery:
    def __init__(self, ctx: Context, redis: Redis, run_id: int, attempt_id: int, lock: RunLock) -> None:
        self.ctx, self.redis, self.run_id, self.attempt_id = ctx, redis, run_id, attempt_id
        self.scope = ctx.scope
        self.stream = keys.events(self.scope, run_id)
        self.consumer = consumer_name()
        self.recorder = AttemptRecorder(ctx.engine)
        self.recorder.attach(run_id, attempt_id, lock)
        self.lock = lock
        with read_tx(ctx.engine) as conn:
            self.status = {
                r.job_id: JobStatus(r.status)
                for r in conn.execute(
                    select(job_runs.c.job_id, job_runs.c.status).where(
                        job_runs.c.run_id == run_id, job_runs.c.attempt_id == attempt_id
                    )
                )
            }

    def run(self, wait: bool, notify) -> bool:
        publish_epoch(self.redis, self.scope, self.run_id, self.lock.epoch)
        ensure_group(self.redis, self.stream)
        self._claim_abandoned()
        entries = read_batch(self.redis, self.stream, self.consumer, block_ms=None, pending=True)
        entries += read_batch(self.redis, self.stream, self.consumer, block_ms=None)
        self._apply(entries)
        notified = False
        while True:
            running = self._still_running()
            # A worker appends "ended" before it closes its lease: one more read after looking at the
            # leases sees the end of every job whose lease was found closed.
            self._apply(read_batch(self.redis, self.stream, self.consumer, block_ms=None))
            if not running or not wait:
                return not running
            if notify is not None and not notified:
                notify(running)
                notified = True
            self.lock.extend()
            self._apply(read_batch(self.redis, self.stream, self.consumer, block_ms=1000))

    def _claim_abandoned(self) -> None:
        """Take over entries a dead coordinator read but never acknowledged."""
        start = "0-0"
        while True:
            start, _claimed, *_ = self.redis.xautoclaim(
                self.stream, keys.EVENT_GROUP, self.consumer, min_idle_time=0, start_id=start, count=1000
            )
            if start in (b"0-0", "0-0"):
                return

    def _apply(self, entries: list[Entry]) -> None:
        acks = []
        for entry in entries:
            acks.append(entry.id)
            if entry.attempt_id != self.attempt_id or entry.job_id not in self.status:
                continue
            if entry.kind == "started":
                self._move(
                    entry.job_id, JobStatus.RUNNING, worker=entry.body["worker"], pid=entry.body.get("pid")
                )
            elif entry.kind == "try":
                self.recorder.try_ended(entry.job_id, TryRecord.from_dict(entry.body))
            else:
                result = JobResult.from_dict(entry.body)
                for record in result.tries:
                    self.recorder.try_ended(entry.job_id, record)
                final, first = result.final, result.tries[0]
                self._move(
                    entry.job_id,
                    final.status,
                    exit_code=final.exit_code,
                    retry_count=max(0, final.try_number - 1),
                    start_time=ts(first.start_time),
                    end_time=ts(final.end_time),
                    duration=max(0.0, final.end_time - first.start_time),
                    worker=final.worker,
                    detail=final.error,
                )
        self.recorder.flush()
        acknowledge(self.redis, self.stream, acks)

    def _move(self, job_id: str, status: JobStatus, **columns) -> None:
        before = self.status[job_id]
        if before is JobStatus.PENDING:
            # An event from a worker proves the job was dispatched: the QUEUED update was in the batch
            # the dead coordinator never committed.
            before = check_job_transition(before, JobStatus.QUEUED)
        if status not in JOB_TRANSITIONS[before]:
            return  # already recorded before the crash (or a late duplicate): history moves forward only
        self.status[job_id] = check_job_transition(before, status)
        self.recorder.job_update(job_id, status=status, **{k: v for k, v in columns.items() if v is not None})

    def _still_running(self) -> list[str]:
        """Jobs of the attempt in flight whose worker still holds a live lease (heart-beating)."""
        # PENDING too: the dead coordinator may have dispatched a job without committing it yet.
        in_flight = [j for j, s in self.status.items() if not s.is_terminal]
        if not in_flight:
            return []
        pattern = keys.lease_pattern(self.scope, self.run_id, self.attempt_id)
        found = list(self.redis.scan_iter(match=pattern, count=1000))
        values = self.redis.mget(found) if found else []  # one round trip, not one per lease
        alive = {
            key.decode().rsplit(":", 2)[1]
            for key, value in zip(found, values, strict=True)
            if value is not None and value.decode() not in (keys.DONE, keys.LOST)
        }
        return sorted(j for j in in_flight if j in alive)
