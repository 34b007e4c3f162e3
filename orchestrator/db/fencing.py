"""The run's fencing token in SQL: bumped by every lock acquisition, checked by every history write.

A holder that lost its lock without noticing (a long pause) still carries the older epoch: its writes
are refused (``FencedError``) instead of corrupting the newer attempt's history.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, select, update

from orchestrator.db.engine import write_tx
from orchestrator.db.schema import runs
from orchestrator.errors import FencedError


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
