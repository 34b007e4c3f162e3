"""Retry policy: pure functions of the job's settings and what happened, no clocks, no I/O.

``next_delay`` and ``should_retry`` are kept apart (dramatiq's ``compute_backoff`` pattern) so each is
tested alone; ``decide`` is the one place that combines them for the runner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from workers.statuses import FAILURE_STATUSES, JobStatus

DEFAULT_RETRY_ON = frozenset(FAILURE_STATUSES)
# The longest time a job's settings may name (timeouts, delays, retry budgets: a year), and the
# longest single wait whatever backoff**tries computes: waits stay numbers every timer accepts.
MAX_SECONDS = 366 * 24 * 3600


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 0
    retry_delay: float = 0.0
    retry_backoff: float = 1.0
    retry_jitter: float = 0.0
    max_retry_delay: float | None = None
    max_retry_time: float | None = None
    retry_on_status: frozenset[JobStatus] = field(default=DEFAULT_RETRY_ON)
    retry_on_exit_codes: frozenset[int] | None = None  # None: any exit code

    def to_dict(self) -> dict:
        return {
            "max_retries": self.max_retries,
            "retry_delay": self.retry_delay,
            "retry_backoff": self.retry_backoff,
            "retry_jitter": self.retry_jitter,
            "max_retry_delay": self.max_retry_delay,
            "max_retry_time": self.max_retry_time,
            "retry_on_status": sorted(self.retry_on_status),
            "retry_on_exit_codes": (
                None if self.retry_on_exit_codes is None else sorted(self.retry_on_exit_codes)
            ),
        }

    @classmethod
    def from_dict(cls, data: dict) -> RetryPolicy:
        codes = data.get("retry_on_exit_codes")
        return cls(
            max_retries=int(data.get("max_retries", 0)),
            retry_delay=float(data.get("retry_delay", 0.0)),
            retry_backoff=float(data.get("retry_backoff", 1.0)),
            retry_jitter=float(data.get("retry_jitter", 0.0)),
            max_retry_delay=data.get("max_retry_delay"),
            max_retry_time=data.get("max_retry_time"),
            retry_on_status=frozenset(JobStatus(s) for s in data.get("retry_on_status", DEFAULT_RETRY_ON)),
            retry_on_exit_codes=None if codes is None else frozenset(int(c) for c in codes),
        )

    @property
    def max_tries(self) -> int:
        return self.max_retries + 1

    def worst_case_seconds(self, timeout: float | None) -> float | None:
        """Upper bound of one job's wall time with every retry used (None: unbounded)."""
        if timeout is None:
            return None
        delays = sum(self.next_delay(n, jitter_sample=1.0) for n in range(1, self.max_tries))
        total = timeout * self.max_tries + delays
        if self.max_retry_time is not None:
            total = min(total, self.max_retry_time + timeout)
        return total

    def next_delay(self, try_number: int, jitter_sample: float = 0.0) -> float:
        """Seconds to wait after try ``try_number`` (1-based) failed, before the next try.

        ``jitter_sample`` in [0, 1) is supplied by the caller (``random.random()`` in production) so the
        function stays pure. The cap (``max_retry_delay``) bounds the whole delay, jitter included.
        """
        if try_number < 1:
            raise ValueError("try_number is 1-based")
        try:
            delay = self.retry_delay * (self.retry_backoff ** (try_number - 1))
        except OverflowError:  # backoff**tries past float range: the cap (or MAX_SECONDS) decides
            delay = math.inf if self.retry_delay > 0 else 0.0
        delay = min(delay + self.retry_jitter * jitter_sample, float(MAX_SECONDS))
        if self.max_retry_delay is not None:
            delay = min(delay, self.max_retry_delay)
        return max(0.0, delay)

    def should_retry(self, status: JobStatus, exit_code: int | None, try_number: int) -> bool:
        """Whether the outcome of try ``try_number`` is one this policy retries (ignoring time)."""
        if try_number >= self.max_tries:
            return False
        if status not in self.retry_on_status:
            return False
        if status is JobStatus.FAILED and self.retry_on_exit_codes is not None:
            return exit_code in self.retry_on_exit_codes
        return True

    def within_budget(self, elapsed_since_first_start: float, delay: float) -> bool:
        """``max_retry_time``: no retry may *start* later than this after the first try began."""
        if self.max_retry_time is None:
            return True
        return elapsed_since_first_start + delay <= self.max_retry_time


@dataclass(frozen=True, slots=True)
class RetryDecision:
    retry: bool
    delay: float = 0.0
    why: str = ""


def decide(
    policy: RetryPolicy,
    *,
    status: JobStatus,
    exit_code: int | None,
    try_number: int,
    elapsed_since_first_start: float,
    jitter_sample: float,
) -> RetryDecision:
    """Combine the policy's rules for the try that just ended."""
    if status is JobStatus.SUCCESS or status is JobStatus.CANCELLED:
        return RetryDecision(False, why="final")
    if try_number >= policy.max_tries:
        return RetryDecision(False, why="no retries left")
    if not policy.should_retry(status, exit_code, try_number):
        return RetryDecision(False, why=f"{status} (exit {exit_code}) is not retried by this job's policy")
    delay = policy.next_delay(try_number, jitter_sample)
    if not policy.within_budget(elapsed_since_first_start, delay):
        return RetryDecision(False, why="max_retry_time exhausted")
    return RetryDecision(True, delay=delay)
