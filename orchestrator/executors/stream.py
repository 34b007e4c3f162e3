"""The coordinator side of the completion channel: a thread reading one run's event stream.

It turns stream entries into executor events for the coordinator's queue (entries are acknowledged
later, once recorded), and watches the leases of the dispatches it saw start: a lease that lapsed
means the worker stopped heart-beating, and the try is reported lost. What it knows about started
dispatches is its own: nothing here is shared with the coordinator's thread.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError, ResponseError

from orchestrator.executors.base import ExecutorFailed, JobEnded, JobLost, Sink, TryStarted, to_event
from workers import keys
from workers.wire import WireError, decode_event

log = logging.getLogger("executioner.stream")
LOST_MARK_TTL_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry, decoded (``workers.wire``); ``id`` is what acknowledges it."""

    id: str
    kind: str
    attempt_id: int
    job_id: str
    first_try: int
    epoch: int
    body: dict

    @classmethod
    def parse(cls, entry_id: bytes | str, fields: dict) -> Entry:
        raw = fields.get(b"e", fields.get("e"))
        if raw is None:
            raise WireError("no 'e' field")
        e = decode_event(raw)
        eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        return cls(eid, e.kind, e.attempt_id, e.job_id, e.first_try, e.epoch, e.body)

    def event(self):
        """The executor event this entry reports; an unreadable body loses its try, never the run."""
        try:
            return to_event(self.kind, self.job_id, self.first_try, self.body, self.id)
        except (WireError, KeyError, TypeError, ValueError) as exc:
            log.error(
                "unreadable %s event of job %r (%s): the try is recorded ERROR", self.kind, self.job_id, exc
            )
            return JobLost(
                self.job_id,
                self.first_try,
                "?",
                time.time(),
                f"unreadable result from its worker: {exc}"[:300],
            )


def ensure_group(redis: Redis, stream: str) -> None:
    try:
        # From id 0: entries written before the group existed are read too.
        redis.xgroup_create(stream, keys.EVENT_GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def consumer_name() -> str:
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def read_batch(
    redis: Redis,
    stream: str,
    consumer: str,
    *,
    block_ms: int | None,
    count: int = 1000,
    pending: bool = False,
) -> list[Entry]:
    """New entries (``>``), or this consumer's own unacknowledged ones (``pending``)."""
    response = redis.xreadgroup(
        keys.EVENT_GROUP, consumer, {stream: "0" if pending else ">"}, count=count, block=block_ms
    )
    entries, bad = [], []
    for _, items in response or []:
        for entry_id, fields in items:
            if not fields:  # an entry deleted after delivery shows up empty in the pending list
                continue
            try:
                entries.append(Entry.parse(entry_id, fields))
            except WireError as exc:  # logged and dropped: one bad entry must not stop the reader
                log.error("stream %s: dropping unreadable entry %s: %s", stream, entry_id, exc)
                bad.append(entry_id.decode() if isinstance(entry_id, bytes) else entry_id)
    acknowledge(redis, stream, bad)
    return entries


def acknowledge(redis: Redis, stream: str, ids: list[str]) -> None:
    if ids:
        pipe = redis.pipeline(transaction=False)
        pipe.xack(stream, keys.EVENT_GROUP, *ids)
        pipe.xdel(stream, *ids)  # recorded in SQL: the stream need not keep it
        pipe.execute()


@dataclass(slots=True)
class _Started:
    try_number: int
    worker: str
    at: float


class StreamReader:
    def __init__(
        self,
        redis: Redis,
        scope: str,
        run_id: int,
        attempt_id: int,
        sink: Sink,
        *,
        check_interval: float,
        lease_ttl: float,
    ) -> None:
        self.redis, self.run_id, self.attempt_id, self.sink = redis, run_id, attempt_id, sink
        self.scope = scope
        self.stream = keys.events(scope, run_id)
        self.consumer = consumer_name()
        self.check_interval = check_interval
        self.lease_ttl = lease_ttl
        self.started: dict[tuple[str, int], _Started] = {}  # owned by the reader thread alone
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"events-{run_id}", daemon=True)
        self._trusted_from = 0.0  # after a Redis outage, leases get one TTL to be renewed again
        self._started = False
        self._error: str | None = None

    def start(self) -> None:
        self._started = True
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        # Break the blocking XREADGROUP instead of waiting out its timeout: the thread owns this
        # client, sees the connection error, finds the stop flag and returns at once.
        with contextlib.suppress(Exception):  # if it cannot, the read returns within its timeout
            self.redis.connection_pool.disconnect()
        self._thread.join()

    @property
    def failure(self) -> str | None:
        """Why the reader thread stopped on its own (None while it runs, or after ``stop``)."""
        if self._error is None and (self._thread.is_alive() or self._stop.is_set() or not self._started):
            return None
        return self._error or "the event reader thread ended"

    def _loop(self) -> None:
        try:
            self._read()
        except BaseException as exc:  # the coordinator's loop sees it through ``failure``
            self._error = f"event reader of run {self.run_id} failed: {type(exc).__name__}: {exc}"[:300]
            log.error("%s", self._error)
            self.sink(ExecutorFailed(self._error))

    def _read(self) -> None:
        next_check = time.monotonic() + self.check_interval
        delay = 0.1
        while not self._stop.is_set():
            block_ms = max(1, int(min(0.5, max(0.0, next_check - time.monotonic())) * 1000))
            try:
                for entry in read_batch(self.redis, self.stream, self.consumer, block_ms=block_ms):
                    self._deliver(entry)
                if time.monotonic() >= next_check:
                    self._check_leases()
                    next_check = time.monotonic() + self.check_interval
                delay = 0.1
            except (RedisError, OSError, ValueError) as exc:
                if self._stop.is_set():
                    return  # stop() broke the connection on purpose
                if not isinstance(exc, RedisError):
                    raise
                log.warning("event stream of run %s unreachable (%s); retrying", self.run_id, exc)
                self._trusted_from = time.monotonic() + self.lease_ttl
                self._stop.wait(delay)
                delay = min(delay * 2, 2.0)

    def _deliver(self, entry: Entry) -> None:
        if entry.attempt_id != self.attempt_id:
            # Left over from an older attempt (recovery records those before a resume): drop it.
            acknowledge(self.redis, self.stream, [entry.id])
            return
        key = (entry.job_id, entry.first_try)
        event = entry.event()
        if isinstance(event, TryStarted):
            self.started[key] = _Started(event.try_number, event.worker, event.at)
        elif isinstance(event, JobEnded | JobLost):
            self.started.pop(key, None)
        self.sink(event)

    def _check_leases(self) -> None:
        if not self.started or time.monotonic() < self._trusted_from:
            return
        items = list(self.started.items())
        pipe = self.redis.pipeline(transaction=False)
        for (job_id, first_try), _ in items:
            # Setting the mark only succeeds if the lease is gone: lost, and now marked so, atomically.
            lease = keys.lease(self.scope, self.run_id, self.attempt_id, job_id, first_try)
            pipe.set(lease, keys.LOST, nx=True, px=LOST_MARK_TTL_MS)
        for ((job_id, first_try), info), lost in zip(items, pipe.execute(), strict=True):
            if lost:
                del self.started[(job_id, first_try)]
                self.sink(
                    JobLost(
                        job_id,
                        info.try_number,
                        info.worker,
                        info.at,
                        f"worker {info.worker} stopped heart-beating (lease expired)",
                    )
                )
