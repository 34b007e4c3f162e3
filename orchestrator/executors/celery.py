"""The Celery executor: ready jobs become Celery tasks on Redis; results come back on a stream."""

from __future__ import annotations

from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from orchestrator.errors import ServiceUnavailableError
from orchestrator.executors.base import Executor, Sink
from orchestrator.executors.stream import StreamReader, acknowledge, ensure_group
from orchestrator.settings import Settings
from workers import keys
from workers.celery_app import TASK_NAME, create_app
from workers.spec import JobTask

CANCEL_TTL_SECONDS = 24 * 3600


class CeleryExecutor(Executor):
    name = "celery"
    # Queued tasks wait in Redis, not in a process of ours: on cancel the coordinator settles them
    # itself, and workers discard them on delivery (the attempt's cancel key).
    withdraws_queued = True

    def __init__(self, settings: Settings, scope: str) -> None:
        self.settings = settings
        self.scope = scope
        self.app = create_app(settings.worker)
        self.redis = Redis.from_url(settings.broker_url, socket_timeout=30, health_check_interval=10)
        self._reader: StreamReader | None = None
        self.run_id: int | None = None
        self.attempt_id: int | None = None

    def check(self) -> None:
        try:
            self.redis.ping()
        except RedisError as exc:
            raise ServiceUnavailableError(
                f"broker {_safe(self.settings.broker_url)} is unreachable: {exc}"
            ) from None

    def open(self, run_id: int, attempt_id: int, epoch: int, sink: Sink) -> None:
        self.run_id, self.attempt_id = run_id, attempt_id
        publish_epoch(self.redis, self.scope, run_id, epoch)
        self.redis.delete(keys.cancel(self.scope, run_id, attempt_id))
        ensure_group(self.redis, keys.events(self.scope, run_id))
        self._reader = StreamReader(
            Redis.from_url(self.settings.broker_url, socket_timeout=30, health_check_interval=10),
            self.scope,
            run_id,
            attempt_id,
            sink,
            check_interval=self.settings.worker.heartbeat_interval,
            lease_ttl=self.settings.worker.heartbeat_ttl,
        )
        self._reader.start()

    def submit(self, task: JobTask) -> None:
        payload = task.to_dict()
        payload["scope"] = self.scope
        self.app.send_task(
            TASK_NAME,
            args=[payload],
            task_id=keys.task_id(task.run_id, task.attempt_id, task.job_id, task.first_try),
            queue=task.queue,
        )

    def cancel(self) -> None:
        if self.run_id is not None:
            self.redis.set(keys.cancel(self.scope, self.run_id, self.attempt_id), 1, ex=CANCEL_TTL_SECONDS)

    def acknowledge(self, acks: list[Any]) -> None:
        acknowledge(self.redis, keys.events(self.scope, self.run_id), acks)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.stop()
            self._reader.redis.close()
            self._reader = None
        self.redis.close()


def publish_epoch(redis: Redis, scope: str, run_id: int, epoch: int) -> None:
    """Mirror the run's fencing token for workers: tasks of an older holder are discarded on delivery."""
    redis.set(keys.epoch(scope, run_id), epoch)


def _safe(url: str | None) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<broker>"
