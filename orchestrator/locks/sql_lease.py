"""The run lease of the local executor: a row in ``run_leases`` with an expiry, in the history database.

Taking it is one conditional UPDATE (free, expired, or ours) or, if there is no row, one INSERT whose
primary key makes concurrent takers collide: exactly one wins on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from orchestrator.db.engine import read_tx, write_tx
from orchestrator.db.fencing import bump_epoch
from orchestrator.db.schema import run_leases, utcnow
from orchestrator.errors import FencedError, LockedError
from orchestrator.locks.base import Holder, LockManager, LockOwner, RunLock


class SqlLeaseManager(LockManager):
    kind = "sql"

    def __init__(self, engine: Engine, ttl: float = 30.0) -> None:
        self.engine = engine
        self.ttl = ttl

    def acquire(self, run_id: int, owner: LockOwner, conn: Connection | None = None) -> RunLock:
        token = uuid.uuid4().hex
        if conn is not None:
            epoch = self._take(conn, run_id, owner, token)
        else:
            try:
                with write_tx(self.engine) as own:
                    epoch = self._take(own, run_id, owner, token)
            except IntegrityError:  # a concurrent taker inserted the row first
                raise self._locked(run_id) from None
        return SqlLease(self, run_id, token, epoch)

    def _take(self, conn: Connection, run_id: int, owner: LockOwner, token: str) -> int:
        now = utcnow()
        values = dict(
            token=token,
            host=owner.host,
            pid=owner.pid,
            what=owner.what,
            acquired_at=now,
            expires_at=now + timedelta(seconds=self.ttl),
        )
        taken = conn.execute(
            update(run_leases)
            .where(run_leases.c.run_id == run_id, run_leases.c.expires_at <= now)
            .values(**values)
        ).rowcount
        if not taken:
            exists = conn.execute(select(run_leases.c.run_id).where(run_leases.c.run_id == run_id)).first()
            if exists:
                raise self._locked(run_id, conn)
            conn.execute(insert(run_leases).values(run_id=run_id, **values))
        return bump_epoch(conn, run_id)

    def _locked(self, run_id: int, conn: Connection | None = None) -> LockedError:
        holder = self._holder(conn, run_id) if conn is not None else self.holder(run_id)
        if holder is None:  # it expired between the two statements: report it plainly
            return LockedError(run_id, "unknown", 0, utcnow())
        return LockedError(run_id, holder.host, holder.pid, holder.since, holder.what)

    def holder(self, run_id: int) -> Holder | None:
        with read_tx(self.engine) as conn:
            return self._holder(conn, run_id)

    @staticmethod
    def _holder(conn: Connection, run_id: int) -> Holder | None:
        row = conn.execute(
            select(run_leases).where(run_leases.c.run_id == run_id, run_leases.c.expires_at > utcnow())
        ).first()
        return None if row is None else Holder(row.host, row.pid, row.what, row.acquired_at)


class SqlLease(RunLock):
    def __init__(self, manager: SqlLeaseManager, run_id: int, token: str, epoch: int) -> None:
        self.manager, self.run_id, self.token, self.epoch = manager, run_id, token, epoch
        self.released = False

    def extend(self) -> None:
        with write_tx(self.manager.engine) as conn:
            ok = conn.execute(
                update(run_leases)
                .where(run_leases.c.run_id == self.run_id, run_leases.c.token == self.token)
                .values(expires_at=utcnow() + timedelta(seconds=self.manager.ttl))
            ).rowcount
        if not ok:
            raise FencedError(f"run {self.run_id}: lease lost (taken over after it expired)")

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        with write_tx(self.manager.engine) as conn:
            conn.execute(
                delete(run_leases).where(run_leases.c.run_id == self.run_id, run_leases.c.token == self.token)
            )


__all__ = ["SqlLease", "SqlLeaseManager"]
