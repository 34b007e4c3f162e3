"""Jobs waiting in a queue: which have waited past their ``queue_timeout``, and which queues no worker
consumes (so the wait is said, not silent). Owned by the coordinator's loop; no I/O but the executor's
``consumers`` probe, at most every ``PROBE_SECONDS``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("executioner")

WAIT_BEFORE_PROBE = 10.0  # a job queued this long makes us ask whether anyone consumes its queue
PROBE_SECONDS = 30.0


class QueueWatch:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.queued: dict[str, tuple[float, str, float | None]] = {}  # job -> (since, queue, timeout)
        self.tasks: dict[str, Any] = {}  # job -> the dispatched task (to withdraw it)
        self.next_probe = 0.0
        self.said: set[str] = set()  # queues already reported unconsumed

    def queued_now(self, job_id: str, task: Any, timeout: float | None) -> None:
        self.queued[job_id] = (self.clock(), task.queue, timeout)
        self.tasks[job_id] = task

    def left_queue(self, job_id: str) -> None:
        self.queued.pop(job_id, None)
        self.tasks.pop(job_id, None)

    def next_deadline(self) -> float | None:
        deadlines = [since + t for since, _, t in self.queued.values() if t is not None]
        return min(deadlines) if deadlines else None

    def timed_out(self) -> list[tuple[str, str, float]]:
        now = self.clock()
        return [(j, q, t) for j, (since, q, t) in self.queued.items() if t is not None and now >= since + t]

    def unconsumed(self, consumers: Callable[[set[str]], set[str] | None]) -> list[str]:
        """Queues with a job waiting longer than ``WAIT_BEFORE_PROBE`` that no worker consumes; each
        is logged once (the live view and the logs say why a job waits)."""
        now = self.clock()
        if now < self.next_probe:
            return []
        waiting = {q for since, q, _ in self.queued.values() if now - since >= WAIT_BEFORE_PROBE}
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
