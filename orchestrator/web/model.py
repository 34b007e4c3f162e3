"""The data behind the run page, assembled from the CLI's own read-only views (``status``, the job
history, ``audit``): nothing here decides a status; it only puts what they say side by side."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

from orchestrator.context import Context
from orchestrator.db.engine import read_tx
from orchestrator.db.queries import RunRecord, audit_trail, job_history, last_tails, run_version
from orchestrator.inspection import status_and_workflow
from orchestrator.listing import iso
from orchestrator.stored import stored_workflow
from orchestrator.web.layout import Layout, layout
from orchestrator.workflow import Workflow
from workers.statuses import AttemptStatus, JobStatus

TAILS_SHOWN = 20  # failed jobs whose output tail the run page shows inline (the rest: their own page)
TAIL_CHARS = 4000
DRAW_LIMIT = 5000  # past this many jobs the DAG is not drawn (the table still lists every job)


class WorkflowCache:
    """Parsed workflows (and their drawings) of recently viewed attempts. An attempt's stored
    workflow never changes, so a page refresh need not parse and lay out 2,000 jobs again. Bounded;
    shared by the server's threads."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._items: OrderedDict[tuple, tuple[Workflow, Layout | None]] = OrderedDict()
        self._lock = threading.Lock()

    def _key(self, record: RunRecord) -> tuple:
        last = record.last_attempt
        return (record.run_id, last.attempt_id if last else None, last.config_hash if last else None)

    def entry(self, record: RunRecord) -> tuple[Workflow, Layout | None]:
        key = self._key(record)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        workflow = stored_workflow(record)
        drawn = None
        if len(workflow.jobs) <= DRAW_LIMIT:
            drawn = layout({j: job.dependencies for j, job in workflow.jobs.items()})
        with self._lock:
            self._items[key] = (workflow, drawn)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return workflow, drawn

    def workflow(self, record: RunRecord) -> Workflow:
        return self.entry(record)[0]

    def drawing(self, run_id: int, workflow: Workflow) -> Layout | None:
        with self._lock:
            for (cached_run, _, _), (wf, drawn) in reversed(self._items.items()):
                if cached_run == run_id and wf is workflow:
                    return drawn
        if len(workflow.jobs) > DRAW_LIMIT:  # evicted meanwhile (many viewers): drawn again
            return None
        return layout({j: job.dependencies for j, job in workflow.jobs.items()})


def version(ctx: Context, run_id: int) -> str:
    """A short tag that changes whenever the run page would (polling asks for it first)."""
    with read_tx(ctx.engine) as conn:
        tag = run_version(conn, run_id)
    return hashlib.sha256(repr(tag).encode()).hexdigest()[:16]


def run_page(ctx: Context, run_id: int, cache: WorkflowCache | None = None) -> dict[str, Any]:
    cache = cache or WorkflowCache(1)
    # The version first, in its own read: a change committed while the page is read then gives the
    # next poll a new tag. Read after the status, it could describe a newer state than the page
    # shows, and every later poll would answer "not modified" (a job left showing PENDING).
    tag = version(ctx, run_id)
    status, workflow = status_and_workflow(ctx, run_id, cache.workflow)
    effective = sorted({s["attempt_id"] for s in status["jobs"].values() if s["attempt_id"]})
    failed_keys = [
        (s["attempt_id"], j) for j, s in status["jobs"].items() if JobStatus(s["status"]).is_failure
    ][:TAILS_SHOWN]
    with read_tx(ctx.engine) as conn:
        # Only the rows each job's effective state comes from (one or two attempts, not every one).
        history = job_history(conn, run_id, attempt_ids=effective, commands=False)  # status has them
        rows = {(r["attempt_id"], r["job_id"]): r for r in history}
        events = audit_trail(conn, run_id)
        tails = last_tails(conn, run_id, failed_keys)
    jobs = []
    for job_id in workflow.jobs:
        state = status["jobs"][job_id]
        row = rows.get((state["attempt_id"], job_id)) or {}
        jobs.append(
            {
                "id": job_id,
                **state,
                "reason": row.get("reason"),
                "detail": row.get("detail"),
                "worker": row.get("worker"),
                "start_time": row.get("start_time"),
                "end_time": row.get("end_time"),
                "duration": row.get("duration"),
                "tries": row.get("retry_history", []),
            }
        )
    failed = {j for _, j in failed_keys}
    failures = [
        {
            **j,
            "stderr": _tail(tails.get(j["id"], {}).get("stderr_tail")),
            "stdout": _tail(tails.get(j["id"], {}).get("stdout_tail")),
            "error": tails.get(j["id"], {}).get("error"),
        }
        for j in jobs
        if j["id"] in failed
    ]
    counts: dict[str, int] = {}
    for j in jobs:
        counts[j["status"]] = counts.get(j["status"], 0) + 1
    last = status["attempts"][-1] if status["attempts"] else None
    return {
        "status": status,
        "jobs": jobs,
        "states": status["jobs"],
        "counts": dict(sorted(counts.items())),
        "failures": failures,
        "layout": cache.drawing(run_id, workflow),
        "audit": [{**e, "at": iso(e["at"])} for e in events],
        "running": last is not None and last["status"] == AttemptStatus.RUNNING,
        "has_failures": bool(failed_keys),
        "version": tag,
    }


def _tail(text: str | None) -> str:
    if not text:
        return ""
    return text if len(text) <= TAIL_CHARS else "[…]" + text[-TAIL_CHARS:]
