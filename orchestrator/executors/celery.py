"""The Celery executor: ready jobs become Celery tasks on Redis; results come back on a stream."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from kombu.exceptions import OperationalError
from redis import Redis
from redis.exceptions import RedisError

from orchestrator.db.engine import safe_url
from orchestrator.errors import ServiceUnavailableError, UserError
from orchestrator.executors.base import Executor, Sink
from orchestrator.executors.stream import StreamReader, acknowledge, ensure_group
from orchestrator.settings import Settings
from workers import keys
from workers.celery_app import TASK_NAME, create_app
from workers.channel import DONE_TTL_MS
from workers.patience import patiently
from workers.redis_client import connect
from workers.secrets import mask_env
from workers.signing import require_key, sign
from workers.spec import JobTask

T = TypeVar("T")
log = logging.getLogger("executioner.celery")
CANCEL_TTL_SECONDS = 24 * 3600
# A signed task is valid this long: as long as a finished job's lease mark lives (workers.channel),
# so a replayed copy is refused by one or the other.
SIGNATURE_TTL_SECONDS = DONE_TTL_MS / 1000
BROKER_ERRORS = (RedisError, OperationalError, OSError)


WITHDRAWN_TTL_MS = 7 * 24 * 3600 * 1000  # as long as a finished lease: outlives any redelivery
PUBLISH_BATCH = 200  # tasks published in one round trip at most


class CeleryExecutor(Executor):
    name = "celery"
    # Queued tasks wait in Redis, not in a process of ours: on cancel the coordinator settles them
    # itself, and workers discard them on delivery (the attempt's cancel key).
    withdraws_queued = True

    def __init__(self, settings: Settings, scope: str) -> None:
        self.settings = settings
        self.scope = scope
        self.app = create_app(settings.worker)
        self.redis = connect(settings.broker_url)
        self._reader: StreamReader | None = None
        self._unacked: list[Any] = []  # recorded in SQL, not yet acknowledged (the broker was away)
        self._outbox: list[JobTask] = []  # submitted, published by the next flush
        self.run_id: int | None = None
        self.attempt_id: int | None = None
        # How long a dispatch waits out a broker outage: past the run lock's TTL the lock is gone
        # anyway (its key expires while Redis is away), so waiting longer could not save the attempt.
        self.patience = settings.lease_ttl
        self._gave_up = False  # once a wait ran out, later calls try once: no second long wait

    def check(self) -> None:
        try:
            require_key(self.settings.broker_url, self.settings.worker.secret_key)
        except ValueError as exc:
            raise UserError(f"--executor celery: {exc}") from None
        try:
            self.redis.ping()
        except RedisError as exc:
            raise ServiceUnavailableError(
                f"broker {safe_url(self.settings.broker_url or '')} is unreachable: {exc}"
            ) from None

    def open(self, run_id: int, attempt_id: int, epoch: int, sink: Sink) -> None:
        self.run_id, self.attempt_id = run_id, attempt_id

        def prepare() -> None:
            publish_epoch(self.redis, self.scope, run_id, epoch)
            self.redis.delete(keys.cancel(self.scope, run_id, attempt_id))
            ensure_group(self.redis, keys.events(self.scope, run_id))

        self._patiently(prepare, f"run {run_id}: opening its event stream")
        self._reader = StreamReader(
            connect(self.settings.broker_url),
            self.scope,
            run_id,
            attempt_id,
            sink,
            check_interval=self.settings.worker.heartbeat_interval,
            lease_ttl=self.settings.worker.heartbeat_ttl,
        )
        self._reader.start()

    def submit(self, task: JobTask) -> None:
        # Sent by ``flush`` (the coordinator's, after each round of submits) or when a batch is full.
        self._outbox.append(task)
        if len(self._outbox) >= PUBLISH_BATCH:
            self.flush()

    def flush(self) -> None:
        tasks, self._outbox = self._outbox, []
        if tasks:
            names = ", ".join(repr(t.job_id) for t in tasks[:3]) + (" ..." if len(tasks) > 3 else "")
            self._patiently(lambda: self._publish(tasks), f"dispatching job{'s' * (len(tasks) > 1)} {names}")

    def _publish(self, tasks: list[JobTask]) -> None:
        """Publish ``tasks`` in one Redis pipeline (kombu's ``Producer.batch``): one round trip and
        one Redis client for the lot instead of each (2,000 jobs: the dispatching thread's CPU
        3.7 -> 3.1 s). Celery's publish retry covers no pipeline, so the whole batch is retried patiently;
        a task that had reached Redis before a failure is then published twice, and the worker's
        claim (the dispatch's lease, ``workers.channel``) runs it once."""
        with self.app.producer_or_acquire() as producer, producer.batch(max_size=len(tasks)):
            for task in tasks:
                self._send(task, producer)

    def _send(self, task: JobTask, producer: Any) -> None:
        payload = task.to_dict()
        payload["scope"] = self.scope
        key = self.settings.worker.secret_key
        if key is not None:  # workers refuse unsigned or tampered tasks (workers.signing)
            payload = sign(payload, key, ttl=SIGNATURE_TTL_SECONDS)
        self.app.send_task(
            TASK_NAME,
            args=[payload],
            task_id=keys.task_id(task.run_id, task.attempt_id, task.job_id, task.first_try),
            queue=task.queue,
            argsrepr=shown_args(payload),  # what Flower and events show: secrets masked
            shadow=f"{self.label}.{task.job_id}" if self.label else None,  # Flower: "nightly_etl.load"
            producer=producer,
        )

    def withdraw(self, task: JobTask) -> bool:
        # The worker's claim takes the dispatch's lease with SET NX: taking it first, for good, means
        # no worker will ever start it; failing to means one already did.
        lease = keys.lease(self.scope, task.run_id, task.attempt_id, task.job_id, task.first_try)
        try:
            return bool(self.redis.set(lease, "withdrawn", nx=True, px=WITHDRAWN_TTL_MS))
        except Exception:  # the broker is away: not withdrawn, the job waits on
            return False

    def consumers(self, queues: set[str]) -> set[str] | None:
        try:
            active = self.app.control.inspect(timeout=1.0).active_queues() or {}
        except Exception:
            return None
        return {q["name"] for worker_queues in active.values() for q in worker_queues or []} & queues

    def cancel(self) -> None:
        if self.run_id is not None:
            key = keys.cancel(self.scope, self.run_id, self.attempt_id)
            self._patiently(
                lambda: self.redis.set(key, 1, ex=CANCEL_TTL_SECONDS), f"cancelling run {self.run_id}"
            )

    def acknowledge(self, acks: list[Any]) -> None:
        # Not worth stalling the run for: entries already in SQL that stay unacknowledged are
        # retried with the next batch (and a later attempt drops them as its predecessor's).
        self._unacked.extend(acks)
        try:
            acknowledge(self.redis, keys.events(self.scope, self.run_id), self._unacked)
        except RedisError as exc:
            log.warning("run %s: acknowledging %d events deferred (%s)", self.run_id, len(self._unacked), exc)
            return
        self._unacked = []

    def failure(self) -> str | None:
        return None if self._reader is None else self._reader.failure

    def close(self, abandon: bool = False) -> None:
        if self._unacked:
            self.acknowledge([])
        if self._reader is not None:
            self._reader.stop()
            self._reader.redis.close()
            self._reader = None
        self.redis.close()

    def _patiently(self, op: Callable[[], T], what: str, *, retry: bool = True) -> T:
        patience = self.patience if retry and not self._gave_up else 0.0
        try:
            return patiently(op, patience=patience, what=what, errors=BROKER_ERRORS)
        except BROKER_ERRORS as exc:
            self._gave_up = True
            waited = f" for {patience:.0f} s" if patience else ""
            raise ServiceUnavailableError(
                f"{what}: broker {safe_url(self.settings.broker_url or '')} unreachable{waited} "
                f"({exc}); the attempt is left for `executioner resume {self.run_id}`"
            ) from None


def shown_args(payload: dict) -> str:
    """The task's arguments as Flower and Celery's events show them: no secret, no signature."""
    shown = {k: v for k, v in payload.items() if k != "sig"}
    shown["env"] = mask_env(payload.get("env") or {})
    return repr([shown])


def publish_epoch(redis: Redis, scope: str, run_id: int, epoch: int) -> None:
    """Mirror the run's fencing token for workers: tasks of an older holder are discarded on delivery."""
    redis.set(keys.epoch(scope, run_id), epoch)
