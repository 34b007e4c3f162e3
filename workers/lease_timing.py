"""When a worker that cannot renew its job's lease must stop the job itself (self-fencing). Pure.

A job's lease lives in Redis and expires ``ttl`` seconds after the last renewal *reached* Redis, so at
least ``ttl`` seconds after it was *sent*. Once it expires the coordinator declares the try lost and
may start another copy elsewhere: this worker's copy must be dead by then, even if the worker cannot
reach Redis (its link is cut, Redis is failing over) and so cannot learn anything. Counting from the
send time of its last successful renewal, on its own monotonic clock, the worker starts stopping the
job ``fence_after`` seconds later, which leaves room for everything between the decision and the
job's death:

- ``tick``: the heartbeat thread looks once per tick;
- ``io_timeout`` twice: the thread's own Redis call, and the job's supervising loop, which may be
  inside a call to Redis (live output for a follower) when it is told to stop;
- ``grace``: SIGTERM, then SIGKILL after this long;
- ``drift``: the two clocks (the worker's, Redis's) need not run at the same rate.

With the defaults (ttl 20 s, renewed every 5 s) a worker rides out about 13 s without Redis before it
stops its jobs; pick ``EXECUTIONER_HEARTBEAT_TTL`` to cover the outages (a Sentinel failover) you
expect, knowing that a lost worker is noticed only that long after it died.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Between SIGTERM and SIGKILL of a timed-out or cancelled job (the runner's, and a fence's at most).
KILL_GRACE_SECONDS = 3.0


@dataclass(frozen=True)
class LeaseTiming:
    ttl: float  # EXECUTIONER_HEARTBEAT_TTL
    interval: float  # EXECUTIONER_HEARTBEAT_INTERVAL

    @property
    def tick(self) -> float:
        return min(1.0, self.interval)

    @property
    def io_timeout(self) -> float:
        """Bound on every Redis call the heartbeat thread and live output make."""
        return min(1.0, self.interval / 2)

    @property
    def grace(self) -> float:
        return min(KILL_GRACE_SECONDS, 0.15 * self.ttl)

    @property
    def drift(self) -> float:
        return max(0.25, 0.05 * self.ttl)

    @property
    def fence_after(self) -> float:
        return self.ttl - (self.tick + 2 * self.io_timeout + self.grace + self.drift)

    def fenced(self, last_renewal_sent: float, now: float) -> bool:
        """Must a job whose last successful renewal was sent at ``last_renewal_sent`` stop now?"""
        return now - last_renewal_sent >= self.fence_after

    def problem(self) -> str | None:
        """Why these settings cannot work (None if they can): a worker must get to renew at least
        once before it would have to fence itself."""
        if self.fence_after < self.interval:
            return (
                f"EXECUTIONER_HEARTBEAT_TTL ({self.ttl:g}s) is too short for EXECUTIONER_HEARTBEAT_INTERVAL "
                f"({self.interval:g}s): a worker would stop its jobs before renewing their lease once; "
                f"use a TTL of at least {self.minimum_ttl():g}s"
            )
        return None

    def minimum_ttl(self) -> float:
        """The smallest TTL (to the half second above) that lets this interval renew once.
        ``fence_after`` grows with the TTL: a bisection, bounded whatever the interval."""

        def works(ttl: float) -> bool:
            return LeaseTiming(ttl, self.interval).fence_after >= self.interval

        low, high = self.interval, 2 * self.interval + 20  # high always works: margins < 0.5 * ttl + 8
        for _ in range(100):
            middle = (low + high) / 2
            low, high = (low, middle) if works(middle) else (middle, high)
        ttl = math.ceil(high * 2) / 2
        return ttl if works(ttl) else ttl + 0.5
