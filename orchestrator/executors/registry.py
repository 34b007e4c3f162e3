"""The executor kinds, registered in one place: what each builds, its default parallelism, and how
an attempt it ran is recovered after its coordinator died.

The CLI's ``--executor`` choices come from ``NAMES``; nothing else dispatches on an executor's name.
Each kind imports its implementation only when used, so listing the names costs nothing.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.context import Context
    from orchestrator.db.recorder import AttemptRecorder
    from orchestrator.executors.base import Executor

NAMES = ("local", "celery")
Notify = Callable[[list[str]], None]


class ExecutorKind(ABC):
    name: str

    @abstractmethod
    def create(self, ctx: Context, parallel: int) -> Executor:
        """An executor for one attempt (raise ``UserError`` if it cannot be built here)."""

    def default_parallelism(self) -> int | None:
        return None

    def check_recoverable(self, ctx: Context, run_id: int, attempt_id: int, host: str) -> None:  # noqa: B027
        """Raise ``UserError`` if this machine cannot see what the attempt's jobs delivered."""

    @abstractmethod
    def still_running(self, ctx: Context, run_id: int, attempt_id: int) -> list[str] | None:
        """Read-only: jobs of an attempt whose coordinator is gone that still run somewhere.

        None: this machine cannot tell (the attempt ran where its evidence is not visible).
        """

    @abstractmethod
    def peek(self, ctx: Context, run_id: int, attempt_id: int) -> list:
        """Read-only: events the attempt's jobs delivered that its history does not hold yet."""

    @abstractmethod
    def recover(
        self,
        ctx: Context,
        recorder: AttemptRecorder,
        statuses: dict,
        *,
        wait: bool,
        notify: Notify | None,
    ) -> bool:
        """Record what the attempt's jobs delivered since its coordinator died (through ``recorder``,
        which holds the run's lock). With ``wait``, follow jobs still running to their end.
        True once none of its jobs runs anywhere any more."""

    def after_abandoned(self, ctx: Context, run_id: int, attempt_id: int, in_flight: list) -> None:  # noqa: B027
        """Called once the attempt is closed: stop whatever of it may still be left behind."""


class LocalKind(ExecutorKind):
    name = "local"

    def create(self, ctx: Context, parallel: int) -> Executor:
        from orchestrator.executors.local import LocalExecutor

        worker = ctx.settings.worker
        return LocalExecutor(
            parallel,
            journal=ctx.journal,
            log_store=worker.log_store,
            home=str(worker.home),
            started=ctx.take_started_pool,
        )

    def default_parallelism(self) -> int | None:
        return os.cpu_count() or 2

    def check_recoverable(self, ctx: Context, run_id: int, attempt_id: int, host: str) -> None:
        import socket

        from orchestrator.errors import UserError

        here = socket.gethostname()
        if host != here and ctx.journal.pool_alive(run_id, attempt_id) is None:
            # Its pool's journal (results it finished, jobs it may still run) is on that host only:
            # settling here would re-run what finished there.
            raise UserError(
                f"run {run_id} attempt {attempt_id} ran on {host} with the local executor and its "
                f"coordinator stopped: run this command on {host}, where its results are kept"
            )

    def still_running(self, ctx: Context, run_id: int, attempt_id: int) -> list[str] | None:
        from orchestrator.executors.local_recovery import still_running

        return still_running(ctx.journal, run_id, attempt_id)

    def peek(self, ctx: Context, run_id: int, attempt_id: int) -> list:
        from orchestrator.executors.local_recovery import peek

        return peek(ctx.journal, run_id, attempt_id)

    def recover(self, ctx, recorder, statuses, *, wait, notify) -> bool:
        from orchestrator.executors.local_recovery import recover

        return recover(ctx.journal, recorder, statuses, wait=wait, notify=notify)

    def after_abandoned(self, ctx: Context, run_id: int, attempt_id: int, in_flight: list) -> None:
        from orchestrator.executors.local_recovery import forget
        from orchestrator.executors.orphans import reap_orphans

        reap_orphans(run_id, attempt_id, in_flight)  # its pool was killed too: nothing reports them
        forget(ctx.journal, run_id, attempt_id)


class CeleryKind(ExecutorKind):
    name = "celery"

    def create(self, ctx: Context, parallel: int) -> Executor:
        from orchestrator.executors.celery import CeleryExecutor

        self._need_broker(ctx, "--executor celery needs a broker")
        return CeleryExecutor(ctx.settings, ctx.scope)

    def still_running(self, ctx: Context, run_id: int, attempt_id: int) -> list[str] | None:
        from orchestrator.recovery import still_running

        self._need_broker(ctx, f"run {run_id} attempt {attempt_id} ran on Celery")
        return still_running(ctx, run_id, attempt_id)

    def peek(self, ctx: Context, run_id: int, attempt_id: int) -> list:
        from orchestrator.recovery import peek

        self._need_broker(ctx, f"run {run_id} attempt {attempt_id} ran on Celery")
        return peek(ctx, run_id, attempt_id)

    def recover(self, ctx, recorder, statuses, *, wait, notify) -> bool:
        from orchestrator.recovery import recover_celery_attempt

        self._need_broker(
            ctx,
            f"run {recorder.run_id} attempt {recorder.attempt_id} ran on Celery and its coordinator stopped",
        )
        return recover_celery_attempt(ctx, recorder, statuses, wait=wait, notify=notify)

    @staticmethod
    def _need_broker(ctx: Context, what: str) -> None:
        from orchestrator.errors import UserError

        if not ctx.settings.broker_url:
            raise UserError(f"{what}: set EXECUTIONER_BROKER_URL (or --broker-url) to reach its workers")


_KINDS: dict[str, ExecutorKind] = {k.name: k for k in (LocalKind(), CeleryKind())}


def kind(name: str) -> ExecutorKind:
    from orchestrator.errors import UserError

    try:
        return _KINDS[name]
    except KeyError:
        raise UserError(f"unknown executor {name!r} (choose from {', '.join(NAMES)})") from None
