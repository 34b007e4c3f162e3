"""``executioner cancel RUN_ID``: stop a live run from any machine that shares its history.

The request is a ``cancel`` audit record naming the running attempt (who, from which host, when):
written without the run's lock, which its coordinator holds. That coordinator sees it within
``POLL_SECONDS`` (``CancelWatch``, a thread that only hands the loop a ``CancelRequested`` event, like
Ctrl-C does), stops its jobs (on Celery, workers kill the process groups), records the attempt
CANCELLED and exits 130. A run whose coordinator is gone is settled as ``resume`` would settle it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, select

from orchestrator.context import Context
from orchestrator.db.audit import record_action
from orchestrator.db.engine import read_tx, write_tx
from orchestrator.db.queries import get_run, load_run
from orchestrator.db.schema import attempts, audit_events
from orchestrator.errors import UserError
from orchestrator.locks.base import LockOwner, RunHandle
from orchestrator.settle import load_settled
from orchestrator.state import AuditAction
from workers.statuses import AttemptStatus

POLL_SECONDS = 1.0


@dataclass(slots=True)
class CancelResult:
    run_id: int
    attempt_id: int
    status: str  # the attempt's status now (RUNNING: requested, not yet stopped; no --wait)
    how: str  # "requested" (a live coordinator stops it) or "settled" (none was alive)

    def as_dict(self) -> dict:
        return {"run_id": self.run_id, "attempt_id": self.attempt_id, "status": self.status, "how": self.how}


def cancel_run(
    ctx: Context,
    run_id: int,
    *,
    wait: bool = False,
    timeout: float = 600.0,
    clock=time.monotonic,
    owner: LockOwner | None = None,
) -> CancelResult:
    with read_tx(ctx.engine) as conn:
        record = load_run(conn, run_id)  # unknown run: exit 2
    last = record.last_attempt
    if last is None or last.status != AttemptStatus.RUNNING:
        status = last.status if last is not None else "no attempt"
        raise UserError(f"run {run_id} is not running (its last attempt is {status}); nothing to cancel")
    owner = owner or LockOwner("cancel")
    locks = ctx.locks_for(record.run)
    if locks.holder(run_id) is None:  # no live coordinator: settle it, as resume would
        with RunHandle(locks, owner, run_id).acquire() as handle:
            settled = load_settled(ctx, handle, wait=False)
            _record(ctx.engine, run_id, last.attempt_id, owner, {"settled": True})
        return CancelResult(run_id, last.attempt_id, settled.last_attempt.status, "settled")
    _record(ctx.engine, run_id, last.attempt_id, owner, {"settled": False})
    status = AttemptStatus.RUNNING
    deadline = clock() + timeout
    while wait and status == AttemptStatus.RUNNING and clock() < deadline:
        time.sleep(0.2)
        status = _attempt_status(ctx.engine, run_id, last.attempt_id)
    return CancelResult(run_id, last.attempt_id, str(status), "requested")


def _record(engine: Engine, run_id: int, attempt_id: int, owner: LockOwner, details: dict) -> None:
    with write_tx(engine) as conn:
        get_run(conn, run_id)
        record_action(
            conn,
            run_id=run_id,
            action=AuditAction.CANCEL,
            job_ids=[],
            actor=owner.actor,
            after_attempt=attempt_id - 1,  # it stops attempt_id: ordered with that attempt
            attempt_id=attempt_id,
            details=details,
        )


def _attempt_status(engine: Engine, run_id: int, attempt_id: int) -> str:
    with read_tx(engine) as conn:
        return conn.execute(
            select(attempts.c.status).where(attempts.c.run_id == run_id, attempts.c.attempt_id == attempt_id)
        ).scalar_one()


def cancel_requested(engine: Engine, run_id: int, attempt_id: int) -> str | None:
    """Who asked to cancel this attempt, if anyone did."""
    with read_tx(engine) as conn:
        return conn.execute(
            select(audit_events.c.actor)
            .where(
                audit_events.c.run_id == run_id,
                audit_events.c.action == AuditAction.CANCEL,
                audit_events.c.attempt_id == attempt_id,
            )
            .limit(1)
        ).scalar()


class CancelWatch:
    """A thread that asks the history every ``POLL_SECONDS`` whether someone cancelled the attempt,
    and tells the coordinator through ``request`` (which only enqueues an event). A failed poll (the
    database away) is simply retried: the coordinator has its own patience for that."""

    def __init__(
        self, engine: Engine, ids: Callable[[], tuple[int | None, int | None]], request: Callable[[str], None]
    ) -> None:
        self.engine, self.ids, self.request = engine, ids, request
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="executioner-cancel-watch", daemon=True)

    def __enter__(self) -> CancelWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=5)

    def _watch(self) -> None:
        while not self.stop.wait(POLL_SECONDS):
            run_id, attempt_id = self.ids()
            if run_id is None or attempt_id is None:
                continue  # the attempt is not written yet: nobody can name it
            try:
                actor = cancel_requested(self.engine, run_id, attempt_id)
            except Exception:  # the history may be away for a while: try again
                continue
            if actor is not None:
                self.request(f"cancelled by {actor} (executioner cancel)")
                return
