"""The data behind the run page, assembled from the CLI's own read-only views (``status``,
``history``, ``audit``): nothing here decides a status; it only puts what they say side by side."""

from __future__ import annotations

from typing import Any

from orchestrator.context import Context
from orchestrator.db.engine import read_tx
from orchestrator.db.queries import last_tails, run_version
from orchestrator.inspection import run_audit, run_history, status_and_workflow
from orchestrator.web.layout import NODE_H, NODE_W, layout
from workers.statuses import AttemptStatus, JobStatus

TAILS_SHOWN = 20  # failed jobs whose output tail the run page shows inline (the rest: their own page)
TAIL_CHARS = 4000
DRAW_LIMIT = 5000  # past this many jobs the DAG is not drawn (the table still lists every job)


def version(ctx: Context, run_id: int) -> str:
    """A short tag that changes whenever the run page would (polling asks for it first)."""
    import hashlib

    with read_tx(ctx.engine) as conn:
        tag = run_version(conn, run_id)
    return hashlib.sha256(repr(tag).encode()).hexdigest()[:16]


def run_page(ctx: Context, run_id: int) -> dict[str, Any]:
    status, workflow = status_and_workflow(ctx, run_id)
    history = run_history(ctx, run_id)
    audit = run_audit(ctx, run_id)
    rows = {(r["attempt_id"], r["job_id"]): r for r in history["rows"]}
    jobs = []
    failed_keys = []
    for job_id, job in workflow.jobs.items():
        state = status["jobs"][job_id]
        row = rows.get((state["attempt_id"], job_id)) or {}
        if JobStatus(state["status"]).is_failure and len(failed_keys) < TAILS_SHOWN:
            failed_keys.append((state["attempt_id"], job_id))
        jobs.append(
            {
                "id": job_id,
                **state,
                "parents": list(job.dependencies),
                "reason": row.get("reason"),
                "detail": row.get("detail"),
                "worker": row.get("worker"),
                "queue": row.get("queue") or job.queue,
                "start_time": row.get("start_time"),
                "end_time": row.get("end_time"),
                "duration": row.get("duration"),
                "tries": row.get("retry_history", []),
                "command": status["commands"].get(job_id),
            }
        )
    with read_tx(ctx.engine) as conn:
        tails = last_tails(conn, run_id, failed_keys)
    failures = [
        {
            **j,
            "stderr": _tail(tails.get(j["id"], {}).get("stderr_tail")),
            "stdout": _tail(tails.get(j["id"], {}).get("stdout_tail")),
            "error": tails.get(j["id"], {}).get("error"),
        }
        for j in jobs
        if (j["attempt_id"], j["id"]) in set(failed_keys)
    ]
    drawn = None
    if len(jobs) <= DRAW_LIMIT:
        drawn = layout({j["id"]: j["parents"] for j in jobs})
    counts: dict[str, int] = {}
    for j in jobs:
        counts[j["status"]] = counts.get(j["status"], 0) + 1
    last = status["attempts"][-1] if status["attempts"] else None
    return {
        "status": status,
        "jobs": jobs,
        "states": {j["id"]: j for j in jobs},
        "counts": dict(sorted(counts.items())),
        "failures": failures,
        "layout": drawn,
        "node_w": NODE_W,
        "node_h": NODE_H,
        "audit": audit["events"],
        "running": last is not None and last["status"] == AttemptStatus.RUNNING,
        "has_failures": any(JobStatus(j["status"]).is_failure for j in jobs),
        "version": version(ctx, run_id),
    }


def _tail(text: str | None) -> str:
    if not text:
        return ""
    return text if len(text) <= TAIL_CHARS else "[…]" + text[-TAIL_CHARS:]
