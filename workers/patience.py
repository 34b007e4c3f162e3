"""Riding out a short broker outage (a Redis restart, a failover): retry with backoff, up to a deadline.

Both sides of the completion channel need it: a worker must not lose a result it could not append,
and a coordinator must not abandon a run because one dispatch met a restarting Redis. Past the
deadline the error propagates; the caller decides what giving up means.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from redis.exceptions import RedisError

T = TypeVar("T")
log = logging.getLogger("executioner.broker")

FIRST_DELAY = 0.1
MAX_DELAY = 2.0


def patiently(
    op: Callable[[], T],
    *,
    patience: float,
    what: str,
    errors: tuple[type[BaseException], ...] = (RedisError,),
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """``op()``, retried on ``errors`` with exponential backoff until ``patience`` seconds have passed."""
    delay, deadline, warned = FIRST_DELAY, clock() + patience, False
    while True:
        try:
            return op()
        except errors as exc:
            if clock() + delay > deadline:
                raise
            if not warned:  # one line per outage, not one per retry
                log.warning("%s: broker unreachable (%s); retrying for up to %.0f s", what, exc, patience)
                warned = True
            sleep(delay)
            delay = min(delay * 2, MAX_DELAY)
