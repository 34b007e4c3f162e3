"""Jobs waiting in a queue: which have waited past their ``queue_timeout``, and which queues no worker
consumes (so the wait is said, not silent). Owned by the coordinator's loop; no I/O but the executor's
``consumers`` probe, at most every ``PROBE_SECONDS``."""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("executioner")

WAIT_BEFORE_PROBE = 10.0  # a job queued this long makes us ask whether anyone consumes its queue
PROBE_SECONDS = 30.0


class QueueWatch:
    """Every question is answered without a walk over all queued jobs: the coordinator asks on each
    turn of its loop, and a 20,000-job Celery run keeps thousands queued (a walk per turn made the
    dispatch of a wide run quadratic)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        # job -> (since, queue, timeout), in the order the jobs were queued: the oldest first.
        self.queued: dict[str, tuple[float, str, float | None]] = {}
        self.tasks: dict[str, Any] = {}  # job -> the dispatched task (to withdraw it)
        self.next_probe = 0.0
        self.said: set[str] = set()  # queues already reported unconsumed
        # (deadline, ticket, job) of jobs with a queue_timeout, and each such job's current ticket:
        # an entry whose ticket is no longer its job's (it left, was queued again, was reported) is
        # skipped when it comes up.
        self._deadlines: list[tuple[float, int, str]] = []
        self._tickets: dict[str, int] = {}
        self._issued = itertools.count()

    def queued_now(self, job_id: str, task: Any, timeout: float | None) -> None:
        self.queued.pop(job_id, None)  # queued again: it goes to the back
        since = self.clock()
        self.queued[job_id] = (since, task.queue, timeout)
        self.tasks[job_id] = task
        self._tickets.pop(job_id, None)
        if timeout is not None:
            ticket = self._tickets[job_id] = next(self._issued)
            heapq.heappush(self._deadlines, (since + timeout, ticket, job_id))

    def left_queue(self, job_id: str) -> None:
        self.queued.pop(job_id, None)
        self.tasks.pop(job_id, None)
        self._tickets.pop(job_id, None)

    def next_deadline(self) -> float | None:
        self._drop_stale()
        return self._deadlines[0][0] if self._deadlines else None

    def timed_out(self) -> list[tuple[str, str, float]]:
        """Jobs whose ``queue_timeout`` has passed, each reported once, earliest deadline first."""
        now, out = self.clock(), []
        self._drop_stale()
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, job_id = heapq.heappop(self._deadlines)
            del self._tickets[job_id]
            _, queue, timeout = self.queued[job_id]
            out.append((job_id, queue, timeout))
            self._drop_stale()
        return out

    def _drop_stale(self) -> None:
        heap = self._deadlines
        while heap and self._tickets.get(heap[0][2]) != heap[0][1]:
            heapq.heappop(heap)

    def unconsumed(self, consumers: Callable[[set[str]], set[str] | None]) -> list[str]:
        """Queues with a job waiting longer than ``WAIT_BEFORE_PROBE`` that no worker consumes; each
        is logged once (the live view and the logs say why a job waits)."""
        now = self.clock()
        if now < self.next_probe or not self.queued:
            return []
        waiting: set[str] = set()
        for since, queue, _ in self.queued.values():  # oldest first: stop at the first recent one
            if now - since < WAIT_BEFORE_PROBE:
                break
            waiting.add(queue)
        if not waiting:
            return []
        self.next_probe = now + PROBE_SECONDS
        served = consumers(waiting)
        if served is None:  # this executor cannot tell
            return []
        idle = sorted(waiting - served)
        for queue in idle:
            if queue not in self.said:
                self.said.add(queue)
                log.warning(
                    "queue %r: no worker consuming; its jobs wait (executioner worker -Q %s)", queue, queue
                )
        return idle
