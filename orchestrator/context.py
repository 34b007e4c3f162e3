"""Everything with a connection, built lazily from one ``Settings`` and closed together."""

from __future__ import annotations

import os
from functools import cached_property

from sqlalchemy import Engine

from orchestrator.db.engine import ensure_schema, make_engine
from orchestrator.errors import UserError
from orchestrator.executors.base import Executor
from orchestrator.locks.base import LockManager
from orchestrator.settings import Settings

EXECUTORS = ("local", "celery")


class Context:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def engine(self) -> Engine:
        engine = make_engine(self.settings.database_url)
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

    @cached_property
    def scope(self) -> str:
        """This history database's installation id, which scopes its runs' keys in Redis."""
        from sqlalchemy import select

        from orchestrator.db.schema import installation

        with self.engine.connect() as conn:
            return conn.execute(select(installation.c.id)).scalar_one().replace("-", "")[:12]

    def executor(self, name: str | None, parallel: int) -> Executor:
        name = name or self.settings.default_executor
        if name == "local":
            from orchestrator.executors.local import LocalExecutor

            return LocalExecutor(parallel)
        if name == "celery":
            if not self.settings.broker_url:
                raise UserError(
                    "--executor celery needs a broker: set EXECUTIONER_BROKER_URL or --broker-url"
                )
            from orchestrator.executors.celery import CeleryExecutor

            return CeleryExecutor(self.settings, self.scope)
        raise UserError(f"unknown executor {name!r} (choose from {', '.join(EXECUTORS)})")

    def default_parallelism(self, executor: str | None) -> int | None:
        """Local: the CPU count. Celery: no cap of our own (the workers' concurrency is the cap)."""
        if (executor or self.settings.default_executor) == "local":
            return os.cpu_count() or 2
        return None

    def close(self) -> None:
        if "locks" in self.__dict__:
            self.locks.close()
        if "engine" in self.__dict__:
            self.engine.dispose()

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
