"""The worker side of the completion channel: leases with heartbeats, and events on the run's stream.

Each run has one Redis Stream; workers XADD ``started``/``try``/``ended`` events and the coordinator
reads them in batches with XREADGROUP and acknowledges them once they are in the SQL history, so a
coordinator that restarts reads whatever it had not recorded yet.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

from redis import Redis
from redis.exceptions import RedisError

from workers import keys
from workers.spec import JobResult, JobTask, TryRecord

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


class Channel:
    def __init__(self, redis: Redis, ttl: float) -> None:
        self.redis = redis
        self.ttl_ms = int(ttl * 1000)
        self._renew = redis.register_script(_RENEW)
        self._finish = redis.register_script(_FINISH)

    def claim(self, task: JobTask, owner: str) -> str:
        lease = keys.lease(task.run_id, task.attempt_id, task.job_id, task.first_try)
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(keys.epoch(task.run_id))
        pipe.exists(keys.cancel(task.run_id, task.attempt_id))
        pipe.set(lease, owner, nx=True, px=self.ttl_ms)
        current_epoch, cancelled, claimed = pipe.execute()
        if current_epoch is not None and int(current_epoch) > task.epoch:
            if claimed:
                self.redis.delete(lease)
            return Claim.STALE
        if not claimed:
            return Claim.TAKEN
        if cancelled:
            self.redis.delete(lease)
            return Claim.CANCELLED
        return Claim.RUN

    def renew(self, task: JobTask, owner: str) -> bool:
        lease = keys.lease(task.run_id, task.attempt_id, task.job_id, task.first_try)
        return bool(self._renew(keys=[lease], args=[owner, self.ttl_ms]))

    def finish(self, task: JobTask, owner: str) -> None:
        lease = keys.lease(task.run_id, task.attempt_id, task.job_id, task.first_try)
        self._finish(keys=[lease], args=[owner, keys.DONE, DONE_TTL_MS])

    def is_cancelled(self, task: JobTask) -> bool:
        return bool(self.redis.exists(keys.cancel(task.run_id, task.attempt_id)))

    def started(self, task: JobTask, try_number: int, worker: str, pid: int, at: float) -> None:
        self._emit(task, "started", {"try": try_number, "worker": worker, "pid": pid, "at": at})

    def try_ended(self, task: JobTask, record: TryRecord) -> None:
        self._emit(task, "try", record.to_dict())

    def ended(self, task: JobTask, result: JobResult) -> None:
        # Tries travel with the final event too: each was also sent alone, but a coordinator reading
        # only this one (its predecessor acked the others) still records every try.
        self._emit(task, "ended", result.to_dict())

    def _emit(self, task: JobTask, kind: str, body: dict) -> None:
        fields = {
            "kind": kind,
            "attempt": task.attempt_id,
            "job": task.job_id,
            "first_try": task.first_try,
            "epoch": task.epoch,
            "body": json.dumps(body),
        }
        # A result must not be lost to a Redis restart: keep trying (bounded) until it is appended.
        delay, deadline = 0.1, time.monotonic() + EMIT_PATIENCE_SECONDS
        while True:
            try:
                self.redis.xadd(keys.events(task.run_id), fields)
                return
            except RedisError:
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)


class Heartbeat:
    """Renews a running dispatch's lease and watches for a cancel; stops the job if either is lost."""

    def __init__(
        self,
        channel: Channel,
        task: JobTask,
        owner: str,
        interval: float,
        on_lost: Callable[[str], None],
    ) -> None:
        self.channel, self.task, self.owner = channel, task, owner
        self.interval = interval
        self.on_lost = on_lost
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{task.job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        # Cancels are checked every second; the lease is renewed every ``interval``.
        ticks_per_renewal = max(1, round(self.interval))
        tick = 0
        while not self._stop.wait(min(1.0, self.interval)):
            tick += 1
            try:
                if self.channel.is_cancelled(self.task):
                    self.on_lost("cancelled by the coordinator")
                    return
                if tick % ticks_per_renewal == 0 and not self.channel.renew(self.task, self.owner):
                    self.on_lost("lease lost: the coordinator declared this try lost")
                    return
            except RedisError:
                continue  # Redis restarting: keep the job running, renew on the next tick
