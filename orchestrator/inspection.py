"""Looking back: ``status``, ``history``, ``audit`` as plain data for the CLI to render (``runs`` is in
``listing``, ``logs`` in ``joblogs``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.context import Context
from orchestrator.db.engine import read_tx
from orchestrator.db.queries import (
    RunRecord,
    audit_trail,
    get_run,
    job_history,
    load_run,
)
from orchestrator.errors import UnknownJobError, UserError
from orchestrator.listing import iso
from orchestrator.notify import status_rows
from orchestrator.planner import PlanRequest, plan
from orchestrator.preview import preview
from orchestrator.run_inputs import RunInputs, runnable, shown_command
from orchestrator.state import PENDING, derived_run_status
from orchestrator.stored import stored_workflow
from orchestrator.workflow import Workflow
from workers.secrets import mask_env
from workers.statuses import AttemptStatus, JobStatus


def run_status(ctx: Context, run_id: int) -> dict[str, Any]:
    """Read-only: never takes a lock, fences or kills anything (a live coordinator goes on as if
    nobody looked). An attempt whose coordinator's lock expired is shown as settling would record it."""
    return status_and_workflow(ctx, run_id)[0]


def status_and_workflow(
    ctx: Context, run_id: int, workflow_of: Callable[[RunRecord], Workflow] = stored_workflow
) -> tuple[dict[str, Any], Workflow]:
    """``status``'s data and the run's stored workflow it was planned with (the web view draws it;
    ``workflow_of`` lets it keep the parsed workflow of an attempt between page loads)."""
    with read_tx(ctx.engine) as conn:
        record = load_run(conn, run_id)
        alerts = status_rows(conn, run_id)
    last = record.last_attempt
    holder = None
    if last is not None and last.status == AttemptStatus.RUNNING:
        holder = ctx.locks_for(record.run).holder(run_id)  # the run's own kind of lock
    view = preview(ctx, record, holder_alive=holder is not None)
    workflow = workflow_of(record)
    next_plan = plan(workflow, view.state, PlanRequest(resume=True))
    inputs = RunInputs.from_row(record.run)
    try:
        jobs = runnable(workflow, inputs, run_id).jobs  # what a resume would run, rendered
    except UserError:
        jobs = workflow.jobs
    states = view.state.jobs  # plain lookups below: once per job
    out = {
        "run_id": run_id,
        "application_name": record.run.application_name,
        "status": derived_run_status(view.status, view.state, workflow.jobs, record.manual_after_last),
        **inputs.as_dict(),
        "pass_env": mask_env(inputs.pass_env),
        "created_at": iso(record.run.created_at),
        "created_by": record.run.created_by,
        "locked_by": None
        if holder is None
        else {"host": holder.host, "pid": holder.pid, "what": holder.what, "since": iso(holder.since)},
        "attempts": [_attempt(a) for a in record.attempts],
        "jobs": {job_id: states.get(job_id, PENDING).as_dict() for job_id in workflow.jobs},
        "notifications": alerts,
        # Beside "jobs" (whose entries keep SPEC's shape): each job's command as a resume renders it.
        "commands": {job_id: shown_command(job) for job_id, job in jobs.items()},
        "next_attempt": {
            "attempt_id": record.next_attempt_id,
            "will_run": next_plan.will_run,
            "will_skip": next_plan.will_skip,
            "reasons": {j: d.reason for j, d in next_plan.decisions.items()},
        },
    }
    if holder is not None and last.executor == "celery":
        out["queues"] = _queues(ctx, workflow, view.state)
    if view.settled:
        # Its coordinator is gone: the figures above are what `resume` will record first.
        out["attempts"][-1]["status"] = view.status
        out["coordinator_gone"] = {"still_running": view.still_running}
    return out, workflow


def _queues(ctx: Context, workflow, state) -> dict[str, bool]:
    """For a live Celery run with jobs waiting: whether some worker consumes each of their queues (a
    broadcast question to the workers: it changes nothing)."""
    waiting = {workflow.jobs[j].queue for j in workflow.jobs if state[j].status is JobStatus.QUEUED}
    if not waiting:
        return {}
    executor = ctx.executor("celery", 1)
    try:
        served = executor.consumers(waiting)
    finally:
        executor.close()
    return {} if served is None else {q: q in served for q in sorted(waiting)}


def _attempt(a) -> dict[str, Any]:
    return {
        "attempt_id": a.attempt_id,
        "status": a.status,
        "start_time": iso(a.start_time),
        "end_time": iso(a.end_time),
        "total_jobs": a.total_jobs,
        "successful_jobs": a.successful_jobs,
        "failed_jobs": a.failed_jobs,
        "skipped_jobs": a.skipped_jobs,
        "config_hash": a.config_hash,
        "triggered_by": a.triggered_by,
        "trigger_reason": a.trigger_reason,
        "parent_attempt_id": a.parent_attempt_id,
        "executor": a.executor,
        "host": a.host,
        "user": a.user,
        "changes": [
            {**c, "before": mask_env(c.get("before")), "after": mask_env(c.get("after"))}
            if c.get("field") == "env"
            else c
            for c in a.changes or []
        ],
        "forced": a.forced,
        "end_reason": a.end_reason,
    }


def run_history(ctx: Context, run_id: int, job_id: str | None = None) -> dict[str, Any]:
    with read_tx(ctx.engine) as conn:
        run = get_run(conn, run_id)
        rows = job_history(conn, run_id, job_id)
    if job_id is not None and not rows:
        raise UnknownJobError(run_id, [job_id])
    out = []
    for r in rows:
        out.append(
            {
                "attempt_id": r["attempt_id"],
                "job_id": r["job_id"],
                "status": r["status"],
                "reason": r["reason"],
                "detail": r["detail"],
                "exit_code": r["exit_code"],
                "start_time": iso(r["start_time"]),
                "end_time": iso(r["end_time"]),
                "duration": r["duration"],
                "retry_count": r["retry_count"],
                "retry_history": [
                    {**t, "start_time": iso(t["start_time"]), "end_time": iso(t["end_time"])}
                    for t in r["retry_history"]
                ],
                "worker": r["worker"],
                "queue": r["queue"],
                "command": r["command"],  # as rendered for that attempt (None: recorded before 0004)
            }
        )
    return {"run_id": run_id, **RunInputs.from_row(run).as_dict(), "rows": out}


def run_audit(ctx: Context, run_id: int) -> dict[str, Any]:
    """Every manual or forcing action on the run, oldest first: mark-success, rollback (also those a
    ``--from-job`` made), forced resumes; who (user@host), when, after which attempt."""
    with read_tx(ctx.engine) as conn:
        get_run(conn, run_id)
        events = audit_trail(conn, run_id)
    return {"run_id": run_id, "events": [{**e, "at": iso(e["at"])} for e in events]}
