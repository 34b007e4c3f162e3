"""``executioner schedule list``: each workflow's next fire times and its last slots (read-only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import distinct, func, select

from orchestrator import slots
from orchestrator.context import Context
from orchestrator.db.engine import read_tx
from orchestrator.db.queries import attempt_snapshot, latest_statuses
from orchestrator.db.schema import attempts, schedule_slots
from orchestrator.intervals import next_slot, scheduled_interval
from orchestrator.loader import load_workflow, workflow_from_data
from orchestrator.workflow import Workflow


def schedule_list(
    ctx: Context, paths: list[str], now: datetime, upcoming: int = 5, recent: int = 5
) -> dict[str, Any]:
    """For WORKFLOW files (or, with none, every application the history has slots of, with the
    schedule of its newest stored workflow): the next ``upcoming`` fire times and data intervals,
    and the newest ``recent`` slots with their outcome, reason, run id and that run's status."""
    with read_tx(ctx.engine) as conn:
        if paths:
            found: list[tuple[str, Workflow | None]] = []
            for path in paths:
                workflow = load_workflow(path)
                found.append((workflow.application_name, workflow))
        else:
            apps = conn.execute(select(distinct(schedule_slots.c.application_name))).scalars().all()
            found = [(app, _stored(conn, app)) for app in sorted(apps)]
        out = []
        for app, workflow in found:
            rows = slots.recent(conn, app, recent)
            statuses = latest_statuses(conn, [r.run_id for r in rows if r.run_id is not None])
            out.append(
                {
                    "application_name": app,
                    "schedule": workflow.schedule.cron if workflow and workflow.schedule else None,
                    "timezone": workflow.schedule.timezone if workflow and workflow.schedule else None,
                    "next": _upcoming(workflow, now, upcoming),
                    "last": [
                        {
                            "slot": r.slot.isoformat(),
                            "outcome": r.outcome,
                            "reason": r.reason,
                            "run_id": r.run_id,
                            "run_status": statuses.get(r.run_id),
                            "fired_at": r.fired_at.isoformat(),
                            "fired_by": r.fired_by,
                        }
                        for r in rows
                    ],
                }
            )
    return {"workflows": out}


def _upcoming(workflow: Workflow | None, now: datetime, count: int) -> list[dict[str, str]]:
    if workflow is None or workflow.schedule is None:
        return []
    out, slot = [], now
    for _ in range(count):
        slot = next_slot(workflow.schedule, slot)
        out.append({"fires_at": slot.isoformat(), **scheduled_interval(workflow.schedule, slot).as_dict()})
    return out


def _stored(conn, app: str) -> Workflow | None:
    """The workflow of the application's newest attempt, if it still loads."""
    newest = select(func.max(attempts.c.run_id)).where(attempts.c.application_name == app).scalar_subquery()
    attempt = conn.execute(
        select(attempts.c.run_id, attempts.c.attempt_id)
        .where(attempts.c.run_id == newest)
        .order_by(attempts.c.attempt_id.desc())
        .limit(1)
    ).first()
    snapshot = attempt_snapshot(conn, attempt.run_id, attempt.attempt_id) if attempt is not None else None
    if snapshot is None:
        return None
    try:
        return workflow_from_data(snapshot, app)
    except Exception:  # a snapshot of an older release: show the slots without next times
        return None
