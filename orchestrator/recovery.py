"""Recovering an attempt whose Celery coordinator died: record what its workers still delivered.

Called through ``orchestrator.settle`` holding the run's lock (so the old coordinator is gone and
fenced out), before the attempt is closed. Jobs the old coordinator had dispatched keep running on
the workers; their events wait in the run's stream. Recovery first publishes the new epoch (queued
copies of the old attempt are then discarded when a worker picks them up), records every event of
the old attempt, and, when asked to wait, follows the jobs still running (live leases) until they end
or their worker is lost. No job is recorded twice (idempotent tries, forward moves only), none lost.
"""

from __future__ import annotations

from collections.abc import Callable

from redis import Redis

from orchestrator.context import Context
from orchestrator.db.recorder import AttemptRecorder
from orchestrator.executors.celery import publish_epoch
from orchestrator.executors.stream import Entry, acknowledge, consumer_name, ensure_group, read_batch
from orchestrator.replay import Replay, record
from workers import keys
from workers.statuses import JobStatus
from workers.wire import WireError


def recover_celery_attempt(
    ctx: Context,
    recorder: AttemptRecorder,
    statuses: dict[str, JobStatus],
    *,
    wait: bool,
    notify: Callable[[list[str]], None] | None = None,
) -> bool:
    """Record delivered results; True once none of the attempt's jobs is still running anywhere."""
    redis = ctx.redis()
    try:
        return _Recovery(ctx, redis, recorder, statuses).run(wait, notify)
    finally:
        redis.close()


def still_running(ctx: Context, run_id: int, attempt_id: int) -> list[str]:
    """Read-only: jobs of the attempt whose worker still holds a live lease (heart-beating)."""
    redis = ctx.redis()
    try:
        return _alive_jobs(redis, ctx.scope, run_id, attempt_id)
    finally:
        redis.close()


def peek(ctx: Context, run_id: int, attempt_id: int) -> list:
    """Read-only: the events of the attempt still waiting in the run's stream (XRANGE: the consumer
    group's state is left as it is)."""
    redis = ctx.redis()
    events = []
    try:
        for entry_id, fields in redis.xrange(keys.events(ctx.scope, run_id), count=100_000):
            try:
                entry = Entry.parse(entry_id, fields)
            except WireError:
                continue
            if entry.attempt_id == attempt_id:
                events.append(entry.event())
    finally:
        redis.close()
    return events


def _alive_jobs(redis: Redis, scope: str, run_id: int, attempt_id: int) -> list[str]:
    pattern = keys.lease_pattern(scope, run_id, attempt_id)
    found = list(redis.scan_iter(match=pattern, count=1000))
    values = redis.mget(found) if found else []  # one round trip, not one per lease
    return sorted(
        {
            key.decode().rsplit(":", 2)[1]
            for key, value in zip(found, values, strict=True)
            if value is not None and value.decode() not in (keys.DONE, keys.LOST)
        }
    )


class _Recovery:
    def __init__(
        self, ctx: Context, redis: Redis, recorder: AttemptRecorder, statuses: dict[str, JobStatus]
    ) -> None:
        self.redis, self.recorder = redis, recorder
        self.scope = ctx.scope
        self.run_id, self.attempt_id = recorder.run_id, recorder.attempt_id
        self.stream = keys.events(self.scope, self.run_id)
        self.consumer = consumer_name()
        self.replay = Replay(statuses)

    def run(self, wait: bool, notify) -> bool:
        publish_epoch(self.redis, self.scope, self.run_id, self.recorder.handle.epoch)
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
            self.recorder.handle.extend()
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
        for entry in entries:
            if entry.attempt_id == self.attempt_id:
                record(self.recorder, self.replay.apply(entry.event()))
        self.recorder.flush()
        acknowledge(self.redis, self.stream, [entry.id for entry in entries])

    def _still_running(self) -> list[str]:
        # PENDING too: the dead coordinator may have dispatched a job without committing it yet.
        in_flight = set(self.replay.unfinished())
        if not in_flight:
            return []
        return [
            j for j in _alive_jobs(self.redis, self.scope, self.run_id, self.attempt_id) if j in in_flight
        ]
