"""SLA alerts: a run not SUCCESS within ``sla`` seconds after its data interval ends (or, without
one, after it began) raises ``deadline_missed`` once — watched by the scheduler, so it fires even
when no coordinator is alive (a run stuck, or never resumed). ``max_run_time`` is the coordinator's
(``orchestrator.coordinator``): it stops an attempt that runs too long.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, func, select

from orchestrator.db.engine import read_tx, write_tx
from orchestrator.db.schema import attempts, runs
from orchestrator.notify import outbox_rows, record
from orchestrator.workflow import Workflow
from workers.statuses import AttemptStatus

LOOK_BACK = timedelta(days=14)  # runs older than this are not watched any more


def check_slas(engine: Engine, workflows: dict[str, Workflow], now: datetime) -> int:
    """Record ``deadline_missed`` for every watched run past its SLA (once per run); returns how many
    runs are past it."""
    late = 0
    for app, workflow in workflows.items():
        if workflow.sla is None or not any("deadline_missed" in r.on for r in workflow.notify):
            continue
        sla = timedelta(seconds=workflow.sla)
        other = attempts.alias()
        newest = select(func.max(other.c.attempt_id)).where(other.c.run_id == runs.c.run_id).scalar_subquery()
        with read_tx(engine) as conn:
            rows = conn.execute(
                select(runs.c.run_id, runs.c.created_at, runs.c.data_interval_end, attempts.c.status)
                .select_from(
                    runs.join(
                        attempts, (attempts.c.run_id == runs.c.run_id) & (attempts.c.attempt_id == newest)
                    )
                )
                .where(runs.c.application_name == app, runs.c.created_at > now - LOOK_BACK)
            ).all()
        for run_id, created, interval_end, status in rows:
            due = (
                interval_end if interval_end is not None and interval_end > created - LOOK_BACK else created
            ) + sla
            if status == AttemptStatus.SUCCESS or now < due:
                continue
            late += 1
            payload = {
                "title": f"{app}: run {run_id} missed its SLA",
                "text": f"{app} run {run_id} is {status}, not SUCCESS, at {due.isoformat()}",
                "run_id": run_id,
                "application_name": app,
                "status": status,
                "due": due.isoformat(),
            }
            with write_tx(engine) as conn:  # event_key: once per run, however many passes see it
                record(
                    conn,
                    outbox_rows(
                        workflow.notify, "deadline_missed", payload, run_id=run_id, attempt_id=None, key="sla"
                    ),
                )
    return late
