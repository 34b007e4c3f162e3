"""``runs``: the history's runs, newest first, filtered and counted.

Kept apart from ``inspection`` on purpose: listing runs needs SQL and nothing else (no planner, no
workflow parser, no graph library), so ``executioner runs`` and the web view's runs list import only
what they use. A run with a manual action after its last attempt (rare) has its status derived as
``status`` derives it; only then is its workflow read.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from orchestrator.context import Context
from orchestrator.db.engine import read_tx
from orchestrator.db.queries import RunFilter, list_runs, load_run, status_counts
from orchestrator.errors import UserError
from orchestrator.params import parse_datetime
from orchestrator.state import derived_run_status


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def run_filter(application: str | None, status: str | None, logical_date: str | None) -> RunFilter:
    """``runs`` filters; ``--logical-date`` is a day (YYYY-MM-DD, the runs' ``ds``) or an exact date-time."""
    if logical_date is None:
        return RunFilter(application, status)
    text = logical_date.strip()
    if len(text) == 10:
        try:
            return RunFilter(application, status, ds=date.fromisoformat(text).isoformat())
        except ValueError:
            pass
    try:
        return RunFilter(application, status, logical_date=parse_datetime(text, UTC))
    except ValueError as exc:
        raise UserError(f"--logical-date {exc}") from None


def runs_list(
    ctx: Context, limit: int = 20, filters: RunFilter | None = None, before: int | None = None
) -> dict[str, Any]:
    with read_tx(ctx.engine) as conn:
        rows = list_runs(conn, limit, filters, before)
        for r in rows:
            # A mark-success or rollback after the last attempt: the status derives from the
            # effective states (SPEC). Rare, so read only those runs in full.
            if r.pop("manual_after_last"):
                r["status"] = _derived_status(conn, r["run_id"])
    wanted = filters.status if filters is not None else None
    return {
        "runs": [
            {
                **r,
                "start_time": iso(r["start_time"]),
                "logical_date": iso(r["logical_date"]),
                "params": r["params"] or {},
            }
            for r in rows
            if wanted is None or r["status"] == wanted
        ]
    }


def runs_counts(ctx: Context, filters: RunFilter | None = None) -> dict[str, int]:
    """How many runs match ``filters`` (but their status) per status: one aggregate, plus the rare runs
    with a manual action after their last attempt, whose status is derived as ``runs`` derives it."""
    with read_tx(ctx.engine) as conn:
        counts, manual_ids = status_counts(conn, filters)
        for run_id in manual_ids:
            status = _derived_status(conn, run_id)
            counts[status] = counts.get(status, 0) + 1
    return dict(sorted(counts.items()))


def _derived_status(conn, run_id: int) -> str:
    from orchestrator.stored import stored_workflow

    record = load_run(conn, run_id)
    return str(
        derived_run_status(record.last_attempt.status, record.state, stored_workflow(record).jobs, True)
    )
