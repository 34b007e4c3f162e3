"""One lock interface for a run, whatever guards it: the SQL lease or a Redis Redlock.

A holder is *alive* while it keeps extending before the TTL runs out; once it stops (killed, host cut
off), the lock expires and the next taker wins. Every acquisition bumps the run's ``epoch`` in SQL
(``orchestrator.db.fencing``), the token every history write carries.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from orchestrator.owner import LockOwner

log = logging.getLogger("executioner")


@dataclass(frozen=True, slots=True)
class Holder:
    host: str
    pid: int
    what: str
    since: datetime


__all__ = ["Holder", "LockManager", "LockOwner", "RunHandle", "RunLock"]


class RunLock(ABC):
    """A held lock. ``epoch`` is the fencing token this holder's writes carry."""

    run_id: int
    epoch: int

    @abstractmethod
    def extend(self) -> None:
        """Push the expiry one TTL further; raise ``FencedError`` if the lock was lost meanwhile."""

    @abstractmethod
    def release(self) -> None:
        """Give the lock up (idempotent)."""

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class LockManager(ABC):
    ttl: float
    kind: str  # recorded with each run it guards ("sql", "redlock")

    @property
    def servers(self) -> list[str]:
        """Where the lock lives, credentials removed (recorded with the run, compared later)."""
        return []

    @abstractmethod
    def acquire(self, run_id: int, owner: LockOwner, conn: Connection | None = None) -> RunLock:
        """Take the run's lock or raise ``LockedError`` naming the holder.

        ``conn`` is the open write transaction that creates a new run: the lock and the run appear
        together, so a refused start leaves nothing behind.
        """

    @abstractmethod
    def holder(self, run_id: int) -> Holder | None:
        """Who holds the run now (None: free, or its holder stopped renewing and it expired)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections the manager holds."""


class RunHandle:
    """The run's lock and the identity of the attempt it guards: one owner, one ``with`` block.

    Whoever starts an attempt (``run``, ``resume``, a recovery, ``mark-success``) holds the handle; the
    coordinator and the recorder only use it. A resume acquires before planning; a new run acquires
    inside the transaction that creates the run (``acquire(conn)``), so a refused start writes nothing.
    Leaving the block releases the lock, whatever happened inside it.
    """

    def __init__(self, locks: LockManager, owner: LockOwner, run_id: int | None = None) -> None:
        self.locks, self.owner, self.run_id = locks, owner, run_id
        self.attempt_id: int | None = None
        self.lock: RunLock | None = None

    def acquire(self, conn: Connection | None = None, run_id: int | None = None) -> RunHandle:
        if run_id is not None:
            self.run_id = run_id
        assert self.run_id is not None and self.lock is None
        self.lock = self.locks.acquire(self.run_id, self.owner, conn)
        return self

    @property
    def held(self) -> bool:
        return self.lock is not None

    @property
    def epoch(self) -> int:
        assert self.lock is not None, "the run's lock is not held"
        return self.lock.epoch

    @property
    def ttl(self) -> float:
        return self.locks.ttl

    def extend(self) -> None:
        if self.lock is not None:
            self.lock.extend()

    def release(self) -> None:
        """Best effort: a lock that cannot be released now (its server is away) expires by itself
        within its TTL; the command's own outcome is what to report."""
        if self.lock is not None:
            try:
                self.lock.release()
            except Exception as exc:
                log.warning(
                    "run %s: releasing its lock failed (%s); it expires within %.0f s",
                    self.run_id,
                    str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
                    self.ttl,
                )

    def __enter__(self) -> RunHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
