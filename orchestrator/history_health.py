"""Whether an attempt's history can be written, and what the coordinator does while it cannot."""

from __future__ import annotations

import logging
import time

from orchestrator.db.engine import describe
from orchestrator.errors import DatabaseFault

log = logging.getLogger("executioner.coordinator")


class HistoryHealth:
    """Whether the history can be written, and for how long it has not been.

    While it cannot, the coordinator starts nothing new and retries with a growing delay; past
    ``patience`` seconds it gives up with one line (``DatabaseFault``, exit 1). Jobs still running
    are left to finish; their results wait in the journal or the stream for ``resume``.
    """

    def __init__(self, patience: float, clock=time.monotonic) -> None:
        self.patience, self.clock = patience, clock
        self.since: float | None = None
        self._retry_at = 0.0
        self._delay = 0.5

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, exc: Exception, run_id: int | None) -> None:
        now = self.clock()
        if self.since is None:
            self.since = now
            log.warning(
                "run %s: the history database cannot be written (%s): no new job starts until it can; "
                "results are kept meanwhile (giving up after %.0f s)",
                run_id,
                describe(exc),
                self.patience,
            )
        elif now - self.since >= self.patience:
            raise DatabaseFault(
                f"run {run_id}: the history database could not be written for {now - self.since:.0f} s "
                f"({describe(exc)}): stopped. Jobs still running finish on their own; their results are "
                f"kept, and `executioner resume {run_id}` records them before it plans anything"
            ) from None
        self._retry_at = now + self._delay
        self._delay = min(self._delay * 2, 5.0)

    def recovered(self, run_id: int | None) -> None:
        if self.since is not None:
            log.warning(
                "run %s: the history database is back after %.0f s", run_id, self.clock() - self.since
            )
        self.since, self._delay = None, 0.5

    def seconds_until_retry(self) -> float | None:
        return None if self.since is None else max(0.0, self._retry_at - self.clock())
