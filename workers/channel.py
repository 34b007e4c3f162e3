"""The worker side of the completion channel: leases with heartbeats, and events on the run's stream.

Each run has one Redis Stream; workers XADD ``started``/``try``/``ended`` events and the coordinator
reads them in batches with XREADGROUP and acknowledges them once they are in the SQL history, so a
coordinator that restarts reads whatever it had not recorded yet.

A job costs two round trips to Redis: one script claims it (fencing epoch, cancel flag, lease) and
announces its start; one script reports its end and closes its lease. (The end is a script call, not
a pipeline holding one: redis-py sends such a pipeline a ``SCRIPT EXISTS`` first, a round trip more
per job. The heartbeat's renewals do go in one, once a tick for all of a worker's jobs.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError

from workers import keys
from workers.lease_timing import LeaseTiming
from workers.patience import patiently
from workers.spec import JobResult, JobTask, TryRecord
from workers.statuses import JobStatus
from workers.wire import encode_event

log = logging.getLogger("executioner.worker")

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
# The job's end on its run's stream, then its lease closed as done if still ours (done leases live
# long enough to stop any redelivery). KEYS: events, lease. ARGV: owner, done, ttl ms, event fields.
_END = """
redis.call('XADD', KEYS[1], '*', unpack(ARGV, 4))
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
end
return 1
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


def _script_args(task: JobTask, kind: str, body: dict) -> list[str]:
    """An event's fields as a script's XADD takes them: name, value, name, value..."""
    return [v for pair in _fields(task, kind, body).items() for v in pair]


class Channel:
    def __init__(self, redis: Redis, ttl: float) -> None:
        self.redis = redis
        self.ttl_ms = int(ttl * 1000)
        self._claim = redis.register_script(_CLAIM)
        self._renew = redis.register_script(_RENEW)
        self._end = redis.register_script(_END)

    def _lease(self, task: JobTask) -> str:
        return keys.lease(task.scope, task.run_id, task.attempt_id, task.job_id, task.first_try)

    def claim(self, task: JobTask, owner: str, worker: str = "") -> str:
        """Take the dispatch (or say why not); on success its first try is announced as started."""
        started = {"try": task.first_try, "worker": worker, "pid": None, "at": time.time()}
        flat = _script_args(task, "started", started)
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

    def check(
        self, watched: list[JobTask], renew: list[tuple[JobTask, str]]
    ) -> tuple[list[bool], list[bool]]:
        """In one round trip: whether each watched job's attempt was cancelled, and the renewal of
        each ``(task, owner)`` lease (False: no longer ours)."""
        pipe = self.redis.pipeline(transaction=False)
        for task in watched:
            pipe.exists(keys.cancel(task.scope, task.run_id, task.attempt_id))
        for task, owner in renew:
            self._renew(keys=[self._lease(task)], args=[owner, self.ttl_ms], client=pipe)
        replies = pipe.execute()
        return [bool(r) for r in replies[: len(watched)]], [bool(r) for r in replies[len(watched) :]]

    def started(
        self,
        task: JobTask,
        try_number: int,
        worker: str,
        pid: int | None,
        at: float,
        patience: float = EMIT_PATIENCE_SECONDS,
    ) -> None:
        """A retry's start (the first try was announced by ``claim``). Sent while the try runs
        unsupervised, so the caller bounds the wait (the try's end carries the same facts)."""
        event = {"try": try_number, "worker": worker, "pid": pid, "at": at}
        self._append(task, "started", event, patience)

    def try_ended(self, task: JobTask, record: TryRecord) -> None:
        self._append(task, "try", record.to_dict())

    def ended(self, task: JobTask, result: JobResult, owner: str) -> None:
        """The job's end and the lease's close in one round trip. The final event carries every try,
        so a coordinator reading only it (its predecessor acked the others) still records them all."""
        flat = _script_args(task, "ended", result.to_dict())
        events, lease = keys.events(task.scope, task.run_id), self._lease(task)
        self._patiently(
            lambda: self._end(keys=[events, lease], args=[owner, keys.DONE, DONE_TTL_MS, *flat]),
            task,
            EMIT_PATIENCE_SECONDS,
        )

    def _append(self, task: JobTask, kind: str, body: dict, patience: float = EMIT_PATIENCE_SECONDS) -> None:
        fields, events = _fields(task, kind, body), keys.events(task.scope, task.run_id)
        self._patiently(lambda: self.redis.xadd(events, fields), task, patience)

    @staticmethod
    def _patiently(send: Callable[[], object], task: JobTask, patience: float) -> None:
        # A result must not be lost to a Redis restart: keep trying (bounded) until it is appended.
        patiently(send, patience=patience, what=f"job {task.job_id!r} of run {task.run_id}")


@dataclass(slots=True)
class _Beat:
    task: JobTask
    owner: str
    stop: Callable[[str, JobStatus], None]
    renewed_at: float  # monotonic time the last successful renewal (or the claim) was sent


class Heartbeats:
    """One thread per worker process renews the leases of the jobs it runs and watches for cancels.

    Every tick one round trip asks whether any job's attempt was cancelled and renews the leases that
    are due. A job is stopped when its attempt was cancelled (CANCELLED), when its lease was taken
    from it (ERROR: the coordinator declared it lost), and, while Redis is out of reach, before its
    lease could expire (ERROR: fenced itself, ``workers.lease_timing``): the coordinator may start
    another copy the moment the lease expires, and two copies of a job must never run at once.
    """

    def __init__(
        self, channel: Channel, timing: LeaseTiming, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.channel = channel  # its client's calls are bounded by timing.io_timeout
        self.timing = timing
        self.clock = clock
        self._jobs: dict[str, _Beat] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(
        self, task: JobTask, owner: str, stop: Callable[[str, JobStatus], None], claimed_at: float
    ) -> _Watch:
        """Watch a job whose lease was claimed by a call sent at ``claimed_at`` (``clock`` time)."""
        with self._lock:
            self._jobs[owner] = _Beat(task, owner, stop, claimed_at)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="heartbeats", daemon=True)
                self._thread.start()
        return _Watch(self, owner)

    def forget(self, owner: str) -> None:
        with self._lock:
            self._jobs.pop(owner, None)

    def _loop(self) -> None:
        while True:
            time.sleep(self.timing.tick)
            try:
                self.beat()
            except Exception:  # the thread must outlive any surprise: the fences depend on it
                log.exception("heartbeat failed")

    def beat(self) -> None:
        """One look: cancels, renewals, fences (the thread's loop; tests call it directly)."""
        with self._lock:
            beats = list(self._jobs.values())
        if not beats:
            return
        sent = self.clock()
        due = [b for b in beats if sent - b.renewed_at >= self.timing.interval]
        try:
            cancelled, renewed = self.channel.check([b.task for b in beats], [(b.task, b.owner) for b in due])
        except RedisError:
            cancelled, renewed = None, None  # out of reach: the fence below decides
        if renewed is not None:
            for beat, ok in zip(due, renewed, strict=True):
                if ok:
                    beat.renewed_at = sent
                else:
                    self._stop(beat, "lease lost: the coordinator declared this try lost", JobStatus.ERROR)
        now = self.clock()
        for i, beat in enumerate(beats):
            if beat.owner not in self._jobs:
                continue
            if cancelled is not None and cancelled[i]:
                self._stop(beat, "cancelled by the coordinator", JobStatus.CANCELLED)
            elif self.timing.fenced(beat.renewed_at, now):
                why = (
                    f"fenced: could not renew its lease for {now - beat.renewed_at:.1f}s (Redis out of "
                    "reach); stopped before the lease could expire and another copy start"
                )
                self._stop(beat, why, JobStatus.ERROR)

    def _stop(self, beat: _Beat, why: str, status: JobStatus) -> None:
        self.forget(beat.owner)
        beat.stop(why, status)


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
