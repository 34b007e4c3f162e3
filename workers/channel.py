"""The worker side of the completion channel: leases with heartbeats, and events on the run's stream.

Each run has one Redis Stream; workers XADD ``started``/``try``/``ended`` events and the coordinator
reads them in batches with XREADGROUP and acknowledges them once they are in the SQL history, so a
coordinator that restarts reads whatever it had not recorded yet.

A job costs two round trips to Redis: one script claims it (fencing epoch, cancel flag, lease) and
announces its start; one pipeline reports its end and closes its lease.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from redis import Redis
from redis.exceptions import RedisError

from workers import keys
from workers.patience import patiently
from workers.spec import JobResult, JobTask, TryRecord
from workers.wire import encode_event

# KEYS: epoch, cancel, lease, events. ARGV: task epoch, owner, ttl ms, then the started event fields.
_CLAIM = """
local current = redis.call('GET', KEYS[1])
if current and tonumber(current) > tonumber(ARGV[1]) then return 'stale' end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'cancelled' end
if not redis.call('SET', KEYS[3], ARGV[2], 'NX', 'PX', ARGV[3]) then return 'taken' end
redis.call('XADD', KEYS[4], '*', unpack(ARGV, 4))
return 'run'
"""
# Renew a lease only while it is still ours (a coordinator may have declared it lost meanwhile).
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# Close a lease as done, only if still ours; done leases live long enough to stop any redelivery.
_FINISH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 0
"""
DONE_TTL_MS = 7 * 24 * 3600 * 1000
EMIT_PATIENCE_SECONDS = 300.0


class Claim:
    """Why a worker may or may not run a delivered task."""

    RUN = "run"
    STALE = "stale"  # dispatched under an older epoch: another coordinator holds the run now
    TAKEN = "taken"  # another copy holds the lease, already finished it, or it was declared lost
    CANCELLED = "cancelled"


def _fields(task: JobTask, kind: str, body: dict) -> dict:
    # One field holding one JSON array (workers.wire): the cheapest entry to write, send and parse.
    return {"e": encode_event(kind, task.attempt_id, task.job_id, task.first_try, task.epoch, body)}


class Channel:
    def __init__(self, redis: Redis, ttl: float) -> None:
        self.redis = redis
        self.ttl_ms = int(ttl * 1000)
        self._claim = redis.register_script(_CLAIM)
        self._renew = redis.register_script(_RENEW)
        self._finish = redis.register_script(_FINISH)

    def _lease(self, task: JobTask) -> str:
        return keys.lease(task.scope, task.run_id, task.attempt_id, task.job_id, task.first_try)

    def claim(self, task: JobTask, owner: str, worker: str = "") -> str:
        """Take the dispatch (or say why not); on success its first try is announced as started."""
        started = _fields(
            task, "started", {"try": task.first_try, "worker": worker, "pid": None, "at": time.time()}
        )
        flat = [v for pair in started.items() for v in pair]
        result = self._claim(
            keys=[
                keys.epoch(task.scope, task.run_id),
                keys.cancel(task.scope, task.run_id, task.attempt_id),
                self._lease(task),
                keys.events(task.scope, task.run_id),
            ],
            args=[task.epoch, owner, self.ttl_ms, *flat],
        )
        return result.decode() if isinstance(result, bytes) else result

    def renew(self, task: JobTask, owner: str) -> bool:
        return bool(self._renew(keys=[self._lease(task)], args=[owner, self.ttl_ms]))

    def is_cancelled(self, task: JobTask) -> bool:
        return bool(self.redis.exists(keys.cancel(task.scope, task.run_id, task.attempt_id)))

    def started(self, task: JobTask, try_number: int, worker: str, pid: int | None, at: float) -> None:
        """A retry's start (the first try was announced by ``claim``)."""
        self._send(task, [("started", {"try": try_number, "worker": worker, "pid": pid, "at": at})])

    def try_ended(self, task: JobTask, record: TryRecord) -> None:
        self._send(task, [("try", record.to_dict())])

    def ended(self, task: JobTask, result: JobResult, owner: str) -> None:
        """The job's end and the lease's close in one round trip. The final event carries every try,
        so a coordinator reading only it (its predecessor acked the others) still records them all."""
        self._send(task, [("ended", result.to_dict())], close_lease=owner)

    def _send(self, task: JobTask, events: list[tuple[str, dict]], close_lease: str | None = None) -> None:
        def append() -> None:
            pipe = self.redis.pipeline(transaction=False)
            for kind, body in events:
                pipe.xadd(keys.events(task.scope, task.run_id), _fields(task, kind, body))
            if close_lease is not None:
                self._finish(
                    keys=[self._lease(task)], args=[close_lease, keys.DONE, DONE_TTL_MS], client=pipe
                )
            pipe.execute()

        # A result must not be lost to a Redis restart: keep trying (bounded) until it is appended.
        patiently(append, patience=EMIT_PATIENCE_SECONDS, what=f"job {task.job_id!r} of run {task.run_id}")


class Heartbeats:
    """One thread per worker process renews the leases of the jobs it runs and watches for cancels.

    Every second it checks each running job's cancel flag; every ``interval`` it renews its lease. A
    job whose lease was taken from it (declared lost) or whose attempt was cancelled is stopped.
    """

    def __init__(self, channel: Channel, interval: float) -> None:
        self.channel = channel
        self.interval = interval
        self._jobs: dict[str, tuple[JobTask, Callable[[str], None]]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, task: JobTask, owner: str, stop: Callable[[str], None]) -> _Watch:
        with self._lock:
            self._jobs[owner] = (task, stop)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="heartbeats", daemon=True)
                self._thread.start()
        return _Watch(self, owner)

    def forget(self, owner: str) -> None:
        with self._lock:
            self._jobs.pop(owner, None)

    def _loop(self) -> None:
        ticks_per_renewal = max(1, round(self.interval))
        tick = 0
        while True:
            time.sleep(min(1.0, self.interval))
            tick += 1
            with self._lock:
                jobs = list(self._jobs.items())
            for owner, (task, stop) in jobs:
                try:
                    if self.channel.is_cancelled(task):
                        stop("cancelled by the coordinator")
                    elif tick % ticks_per_renewal == 0 and not self.channel.renew(task, owner):
                        stop("lease lost: the coordinator declared this try lost")
                    else:
                        continue
                    self.forget(owner)
                except RedisError:
                    continue  # Redis restarting: keep the job running, renew on the next tick


class _Watch:
    def __init__(self, heartbeats: Heartbeats, owner: str) -> None:
        self.heartbeats, self.owner = heartbeats, owner

    def __enter__(self) -> _Watch:
        return self

    def __exit__(self, *exc) -> None:
        self.heartbeats.forget(self.owner)


class OutputFeed:
    """A running try's output, published to Redis only while a ``logs --follow`` reads the job (its
    follower key exists, checked at most once a second), capped and expiring: never a second log."""

    MAXLEN = 500
    TTL_SECONDS = 600

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._checked: dict[str, tuple[float, bool]] = {}

    def __call__(self, task: JobTask, try_number: int, stream: int, chunk: bytes) -> None:
        if not chunk:
            return
        follow = keys.follower(task.scope, task.run_id, task.attempt_id, task.job_id)
        at, wanted = self._checked.get(follow, (0.0, False))
        now = time.monotonic()
        if now - at >= 1.0:
            wanted = bool(self.redis.exists(follow))
            self._checked[follow] = (now, wanted)
        if not wanted:
            return
        key = keys.output(task.scope, task.run_id, task.attempt_id, task.job_id, try_number)
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(key, {"s": stream, "d": chunk}, maxlen=self.MAXLEN, approximate=True)
        pipe.expire(key, self.TTL_SECONDS)
        pipe.execute()
