"""Settling an attempt whose coordinator died: the one recovery path, for every executor kind.

Only write commands settle (``resume``, ``mark-success``, ``rollback``), holding the run's lock: holding
it proves the old coordinator is gone, and taking it fenced that coordinator out. Its executor kind
records what the attempt's jobs delivered since (``ExecutorKind.recover``), then the attempt is
closed: with the outcome it earned if every job reached an end, else INTERRUPTED. ``status`` only
*shows* what settling would record (``orchestrator.preview``), without a lock or a write.
"""

from __future__ import annotations

import logging

from orchestrator.context import Context
from orchestrator.db.closing import close_abandoned
from orchestrator.db.engine import read_tx, write_tx
from orchestrator.db.fencing import check_epoch
from orchestrator.db.queries import RunRecord, load_run
from orchestrator.db.recorder import AttemptRecorder
from orchestrator.executors.registry import kind
from orchestrator.locks.base import RunHandle
from orchestrator.notify_rules import rules_from_snapshot
from orchestrator.preview import attempt_statuses
from workers.statuses import AttemptStatus

log = logging.getLogger("executioner")


def load_settled(ctx: Context, handle: RunHandle, *, wait: bool = True) -> RunRecord:
    """The run's record once an attempt left RUNNING by a dead coordinator is closed.

    With ``wait``, jobs of that attempt still running (on workers, or in the local pool that
    outlived its coordinator) are followed to their end first; without it, such an attempt stays
    RUNNING for now.
    """
    run_id = handle.run_id
    with read_tx(ctx.engine) as conn:
        record = load_run(conn, run_id)
    last = record.last_attempt
    if last is None or last.status != AttemptStatus.RUNNING:
        return record
    executor = kind(last.executor)
    executor.check_recoverable(ctx, run_id, last.attempt_id, last.host)
    recorder = AttemptRecorder(ctx.engine)
    handle.attempt_id = last.attempt_id
    recorder.attach(handle)
    statuses = attempt_statuses(ctx, run_id, last.attempt_id)
    if not executor.recover(ctx, recorder, statuses, wait=wait, notify=_waiting):
        with read_tx(ctx.engine) as conn:
            return load_run(conn, run_id)
    with write_tx(ctx.engine) as conn:
        check_epoch(conn, run_id, handle.epoch)
        status, in_flight = close_abandoned(
            conn, run_id, last.attempt_id, rules_from_snapshot(record.last_snapshot)
        )
    log.info("run %s attempt %s settled as %s", run_id, last.attempt_id, status)
    executor.after_abandoned(ctx, run_id, last.attempt_id, in_flight)
    with read_tx(ctx.engine) as conn:
        return load_run(conn, run_id)


def _waiting(jobs: list[str]) -> None:
    log.warning(
        "the interrupted attempt still has %d job(s) running on workers (%s): waiting for them",
        len(jobs),
        ", ".join(jobs),
    )
