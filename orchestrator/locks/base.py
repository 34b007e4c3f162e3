"""One lock interface for a run, whatever guards it: the SQL lease (local) or Redis Redlock (celery).

A holder is *alive* while it keeps extending before the TTL runs out; once it stops (killed, host cut
off), the lock expires and the next taker wins. Every acquisition bumps the run's ``epoch`` in SQL, the
fencing token history writes carry: a holder that lost its lock without noticing (a long pause) has an
older epoch and its writes are refused (``FencedError``) instead of corrupting the newer attempt.
"""

from __future__ import annotations

import getpass
import os
import socket
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, Engine, select, update

from orchestrator.db.engine import write_tx
from orchestrator.db.schema import runs
from orchestrator.errors import FencedError


@dataclass(frozen=True, slots=True)
class LockOwner:
    what: str  # "run", "resume", "mark-success", ... shown to whoever is refused
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    user: str = field(default_factory=getpass.getuser)

    @property
    def actor(self) -> str:
        return f"{self.user}@{self.host}"


@dataclass(frozen=True, slots=True)
class Holder:
    host: str
    pid: int
    what: str
    since: datetime


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


def bump_epoch(conn: Connection, run_id: int) -> int:
    conn.execute(update(runs).where(runs.c.run_id == run_id).values(epoch=runs.c.epoch + 1))
    return conn.execute(select(runs.c.epoch).where(runs.c.run_id == run_id)).scalar_one()


def bump_epoch_tx(engine: Engine, run_id: int, conn: Connection | None) -> int:
    if conn is not None:
        return bump_epoch(conn, run_id)
    with write_tx(engine) as own:
        return bump_epoch(own, run_id)


def check_epoch(conn: Connection, run_id: int, epoch: int) -> None:
    """First statement of every history write: refuse it if a newer holder took the run."""
    result = conn.execute(
        update(runs).where(runs.c.run_id == run_id, runs.c.epoch == epoch).values(epoch=epoch)
    )
    if result.rowcount != 1:
        raise FencedError(f"run {run_id}: another coordinator took over (epoch {epoch} is stale)")
