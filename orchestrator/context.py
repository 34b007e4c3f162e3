"""Everything with a connection, built lazily from one ``Settings`` and closed together."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy import Engine, Row

from orchestrator.db.engine import SQLITE_BUSY_TIMEOUT_MS, ensure_schema, make_engine
from orchestrator.errors import UserError
from orchestrator.settings import Settings

if TYPE_CHECKING:  # built on demand: a read-only command needs neither
    import subprocess

    from redis import Redis

    from orchestrator.executors.base import Executor
    from orchestrator.locks.base import LockManager
    from workers.journal import Journal


class Context:
    def __init__(self, settings: Settings, pool: subprocess.Popen | None = None) -> None:
        self.settings = settings
        # A local job pool the command started ahead (workers.pool_start): the attempt that opens
        # first takes it; closing the context stops it if none did.
        self._pool = pool

    def take_started_pool(self) -> subprocess.Popen | None:
        pool, self._pool = self._pool, None
        return pool

    @cached_property
    def engine(self) -> Engine:
        # No write may block the loop past a third of the lock's TTL (it renews every third).
        busy = int(min(SQLITE_BUSY_TIMEOUT_MS, self.settings.lease_ttl * 1000 / 3))
        engine = make_engine(self.settings.database_url, busy_timeout_ms=busy)
        ensure_schema(engine)
        return engine

    @cached_property
    def locks(self) -> LockManager:
        """Redlock when Redis lock servers are configured (any executor), else the SQL lease.

        One configuration, one kind of lock: ``mark-success`` on a machine must see the same lock the
        run's coordinator holds, whichever executor that coordinator uses.
        """
        if self.settings.redlock_urls:
            from orchestrator.locks.redlock import RedlockManager

            return RedlockManager(
                self.engine, self.settings.redlock_urls, ttl=self.settings.lease_ttl, scope=self.scope
            )
        from orchestrator.locks.sql_lease import SqlLeaseManager

        return SqlLeaseManager(self.engine, ttl=self.settings.lease_ttl)

    def locks_for(self, run: Row) -> LockManager:
        """The lock manager of the kind that guards ``run`` (recorded with it), whatever this
        command's own configuration would choose for a new run.

        A command that cannot reach the run's lock refuses (one line naming what to set) rather
        than take a different, unrelated lock: that would fence out a live coordinator.
        """
        kind = run.lock_kind or self.locks.kind  # runs recorded before the kind was: as before
        if kind == "sql":
            return self.locks if self.locks.kind == "sql" else self.sql_locks
        recorded = sorted(run.lock_servers or [])
        if self.locks.kind != "redlock":
            raise UserError(
                f"run {run.run_id} is guarded by a Redis Redlock ({', '.join(recorded) or 'Redis'}): "
                "set EXECUTIONER_BROKER_URL or EXECUTIONER_LOCK_URLS to reach it"
            )
        if recorded and self.locks.servers != recorded:
            raise UserError(
                f"run {run.run_id} is guarded by a Redlock on {', '.join(recorded)}, but this command "
                f"is configured for {', '.join(self.locks.servers)}: set EXECUTIONER_LOCK_URLS to the run's"
            )
        return self.locks

    @cached_property
    def sql_locks(self) -> LockManager:
        """The SQL lease, for runs it guards when this command's settings would choose Redlock."""
        from orchestrator.locks.sql_lease import SqlLeaseManager

        return SqlLeaseManager(self.engine, ttl=self.settings.lease_ttl)

    @cached_property
    def scope(self) -> str:
        """This history database's installation id, which scopes its runs' keys in Redis."""
        from sqlalchemy import select

        from orchestrator.db.schema import installation

        with self.engine.connect() as conn:
            return conn.execute(select(installation.c.id)).scalar_one().replace("-", "")[:12]

    def executor(self, name: str | None, parallel: int) -> Executor:
        from orchestrator.executors.registry import kind

        return kind(name or self.settings.default_executor).create(self, parallel)

    def default_parallelism(self, executor: str | None) -> int | None:
        """Local: the CPU count. Celery: no cap of our own (the workers' concurrency is the cap)."""
        from orchestrator.executors.registry import kind

        return kind(executor or self.settings.default_executor).default_parallelism()

    @cached_property
    def journal(self) -> Journal:
        """Where the local pool keeps results until they are in this history (per installation)."""
        from workers.journal import Journal

        return Journal(self.settings.home / "journal" / self.scope)

    def redis(self) -> Redis:
        """A new client for the broker (the caller closes it)."""
        from workers.redis_client import connect

        assert self.settings.broker_url, "no broker configured"
        return connect(self.settings.broker_url)

    def close(self) -> None:
        if self._pool is not None:
            from workers.pool_start import discard

            discard(self.take_started_pool())
        for name in ("locks", "sql_locks"):
            if name in self.__dict__:
                self.__dict__[name].close()
        if "engine" in self.__dict__:
            self.engine.dispose()

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
