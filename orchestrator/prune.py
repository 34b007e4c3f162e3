"""``executioner prune --older-than DUR [--yes]``: retention for history and logs.

A run is pruned when it was created before the cut-off and is not running (its last attempt is not
RUNNING and nobody holds its lock). Without ``--yes`` it only says what it would remove. With it, the
runs' rows go in batches (one transaction each: a batch is removed whole or not at all), then their
logs in the log store reachable from here and their local journals. Schedule slots of pruned runs
stay, as ``pruned``, so neither the scheduler nor a backfill fires those slots again.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update

from orchestrator.context import Context
from orchestrator.db.engine import read_tx, write_tx
from orchestrator.db.schema import (
    attempt_snapshots,
    attempts,
    audit_events,
    job_runs,
    job_tries,
    run_leases,
    runs,
    schedule_slots,
)
from orchestrator.errors import UserError
from workers.statuses import AttemptStatus

BATCH = 500
PRUNED = "pruned"


@dataclass(slots=True)
class PruneReport:
    cutoff: datetime
    run_ids: list[int] = field(default_factory=list)
    skipped_running: list[int] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    log_bytes: int = 0
    deleted: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff.isoformat(),
            "runs": self.run_ids,
            "skipped_running": self.skipped_running,
            "rows": self.rows,
            "log_bytes": self.log_bytes,
            "deleted": self.deleted,
        }


def parse_age(text: str) -> timedelta:
    units = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    number, unit = text.strip()[:-1], text.strip()[-1:]
    if unit not in units or not number.isdigit() or len(number) > 6:
        raise UserError(f"--older-than {text!r}: expected a whole number and a unit (m, h, d, w), e.g. 30d")
    return timedelta(**{units[unit]: int(number)})


def prune(ctx: Context, older_than: timedelta, now: datetime, *, yes: bool = False) -> PruneReport:
    report = PruneReport(now - older_than)
    candidates = _candidates(ctx, report.cutoff)
    for run in candidates:
        if run.status == AttemptStatus.RUNNING or _locked(ctx, run):
            report.skipped_running.append(run.run_id)
        else:
            report.run_ids.append(run.run_id)
    store = ctx.settings.worker.make_log_store()
    with read_tx(ctx.engine) as conn:
        for table in (attempts, job_runs, job_tries, audit_events):
            report.rows[table.name] = sum(
                conn.execute(select(func.count()).where(table.c.run_id.in_(chunk))).scalar() or 0
                for chunk in _chunks(report.run_ids)
            )
    report.rows["runs"] = len(report.run_ids)
    report.log_bytes = sum(store.run_size(ctx.scope, r) for r in report.run_ids)
    if not yes:
        return report
    for chunk in _chunks(report.run_ids):
        with write_tx(ctx.engine) as conn:
            # Re-checked inside the transaction: a resume that began meanwhile keeps its run.
            busy = set(
                conn.execute(
                    select(attempts.c.run_id).where(
                        attempts.c.run_id.in_(chunk), attempts.c.status == AttemptStatus.RUNNING
                    )
                ).scalars()
            )
            chunk = [r for r in chunk if r not in busy]
            conn.execute(
                update(schedule_slots)
                .where(schedule_slots.c.run_id.in_(chunk))
                .values(outcome=PRUNED, run_id=None)
            )
            for table in (job_tries, job_runs, audit_events, run_leases, attempt_snapshots, attempts, runs):
                conn.execute(delete(table).where(table.c.run_id.in_(chunk)))
        for run_id in chunk:
            store.remove_run(ctx.scope, run_id)
            shutil.rmtree(ctx.settings.home / "journal" / ctx.scope / f"run-{run_id}", ignore_errors=True)
    report.deleted = True
    return report


def _candidates(ctx: Context, cutoff: datetime) -> list:
    other = attempts.alias()
    newest = select(func.max(other.c.attempt_id)).where(other.c.run_id == runs.c.run_id).scalar_subquery()
    with read_tx(ctx.engine) as conn:
        return list(
            conn.execute(
                select(runs, attempts.c.status)
                .select_from(
                    runs.outerjoin(
                        attempts, (attempts.c.run_id == runs.c.run_id) & (attempts.c.attempt_id == newest)
                    )
                )
                .where(runs.c.created_at < cutoff)
                .order_by(runs.c.run_id)
            )
        )


def _locked(ctx: Context, run: Any) -> bool:
    try:
        return ctx.locks_for(run).holder(run.run_id) is not None
    except UserError:  # its lock cannot be reached from here: leave it alone
        return True


def _chunks(ids: list[int]) -> list[list[int]]:
    return [ids[i : i + BATCH] for i in range(0, len(ids), BATCH)]
