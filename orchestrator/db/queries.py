"""Read side of the history: one query per table, then pure code (no N+1 anywhere)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, or_, select

from orchestrator.db.schema import attempt_snapshots, attempts, audit_events, job_runs, job_tries, runs
from orchestrator.errors import UnknownRunError
from orchestrator.state import AuditAction, AuditFact, RunState, derive_state
from workers.statuses import JobStatus

# Everything of an attempt but its (large) workflow snapshot: only the newest attempt's is needed.
_ATTEMPT_COLUMNS = [c for c in attempts.c if c.name != "workflow_snapshot"]


@dataclass(slots=True)
class RunRecord:
    """A run as the restart logic needs it: its row, its attempts and its effective state."""

    run: Row
    attempts: list[Row]
    state: RunState
    last_snapshot: dict[str, Any] | None
    manual_after_last: bool = False  # a mark-success or rollback came after the last attempt

    @property
    def run_id(self) -> int:
        return self.run.run_id

    @property
    def last_attempt(self) -> Row | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def next_attempt_id(self) -> int:
        return len(self.attempts) + 1 if not self.attempts else self.attempts[-1].attempt_id + 1


def get_run(conn: Connection, run_id: int) -> Row:
    row = conn.execute(select(runs).where(runs.c.run_id == run_id)).first()
    if row is None:
        raise UnknownRunError(run_id)
    return row


def attempt_snapshot(conn: Connection, run_id: int, attempt_id: int) -> dict[str, Any] | None:
    """The workflow an attempt ran, as it stored it: in ``attempt_snapshots`` since migration 0005,
    in the attempt's own row before."""
    for column, table in (
        (attempt_snapshots.c.snapshot, attempt_snapshots),
        (attempts.c.workflow_snapshot, attempts),
    ):
        found = conn.execute(
            select(column).where(table.c.run_id == run_id, table.c.attempt_id == attempt_id)
        ).scalar()
        if found is not None:
            return found
    return None


def load_run(conn: Connection, run_id: int) -> RunRecord:
    run = get_run(conn, run_id)
    attempt_rows = list(
        conn.execute(
            select(*_ATTEMPT_COLUMNS).where(attempts.c.run_id == run_id).order_by(attempts.c.attempt_id)
        )
    )
    facts = conn.execute(
        select(
            job_runs.c.attempt_id,
            job_runs.c.job_id,
            job_runs.c.status,
            job_runs.c.exit_code,
            job_runs.c.retry_count,
        ).where(
            job_runs.c.run_id == run_id,
            job_runs.c.status.not_in([JobStatus.SKIPPED, JobStatus.PENDING]),
        )
    ).all()  # one fetch: row by row costs more than the rest of reading 100,000 of them
    audits = [
        AuditFact(r.after_attempt, r.id, AuditAction(r.action), tuple(r.job_ids), r.attempt_id)
        for r in conn.execute(
            select(
                audit_events.c.id,
                audit_events.c.after_attempt,
                audit_events.c.action,
                audit_events.c.job_ids,
                audit_events.c.attempt_id,
            ).where(audit_events.c.run_id == run_id)
        )
    ]
    last = attempt_rows[-1].attempt_id if attempt_rows else 0
    # The (large) workflow snapshot only of the newest attempt.
    snapshot = attempt_snapshot(conn, run_id, last) if attempt_rows else None
    manual = any(a.attempt_id is None and a.after_attempt >= last for a in audits)
    return RunRecord(run, attempt_rows, derive_state(facts, audits), snapshot, manual)


@dataclass(frozen=True, slots=True)
class RunFilter:
    application_name: str | None = None
    status: str | None = None  # the latest attempt's
    ds: str | None = None  # the logical date's day (YYYY-MM-DD, in the schedule's zone)
    logical_date: datetime | None = None  # or an exact logical date


def list_runs(
    conn: Connection, limit: int, filters: RunFilter | None = None, before: int | None = None
) -> list[dict[str, Any]]:
    """Newest first: each run with its latest attempt's status and its attempt count (one query).
    ``before``: only runs with a smaller id (the next page, stable while new runs arrive)."""
    f = filters or RunFilter()
    query = _filtered(
        select(runs, attempts.c.attempt_id.label("n"), attempts.c.status, _manual_after().label("manual")),
        f,
    )
    query = query.order_by(runs.c.run_id.desc()).limit(limit)
    if before is not None:
        query = query.where(runs.c.run_id < before)
    return [
        {
            "run_id": r.run_id,
            "application_name": r.application_name,
            "status": r.status,
            "attempts": r.n,
            "start_time": r.created_at,
            "logical_date": r.logical_date,
            "ds": r.ds,
            "params": r.params,
            "manual_after_last": bool(r.manual),
        }
        for r in conn.execute(query)
    ]


def status_counts(conn: Connection, filters: RunFilter | None = None) -> tuple[dict[str, int], list[int]]:
    """How many runs match ``filters`` (its status aside) per latest attempt status, in one
    aggregate; and the ids of runs with a manual action after their last attempt, whose status the
    caller derives (they are counted apart, not guessed)."""
    f = replace(filters or RunFilter(), status=None)
    manual = _manual_after()
    grouped = _filtered(select(attempts.c.status, func.count()).where(~manual), f).group_by(attempts.c.status)
    counts = {status: n for status, n in conn.execute(grouped)}
    manual_ids = list(conn.execute(_filtered(select(runs.c.run_id).where(manual), f)).scalars())
    return counts, manual_ids


def _manual_after():
    """A mark-success or rollback recorded after the run's latest attempt (joined as ``attempts``)."""
    return (
        select(audit_events.c.id)
        .where(
            audit_events.c.run_id == runs.c.run_id,
            audit_events.c.attempt_id.is_(None),
            audit_events.c.after_attempt >= attempts.c.attempt_id,
        )
        .exists()
    )


def _filtered(query, f: RunFilter):
    # The newest attempt by a correlated lookup on the primary key: newest runs first, stopping at
    # the page's end (no aggregate over every attempt of the history).
    other = attempts.alias()
    newest = select(func.max(other.c.attempt_id)).where(other.c.run_id == runs.c.run_id).scalar_subquery()
    query = query.select_from(
        runs.join(attempts, (attempts.c.run_id == runs.c.run_id) & (attempts.c.attempt_id == newest))
    )
    if f.application_name is not None:
        query = query.where(runs.c.application_name == f.application_name)
    if f.status is not None:  # a run with a manual action after its last attempt: judged by the caller
        query = query.where(or_(attempts.c.status == f.status, _manual_after()))
    if f.ds is not None:
        query = query.where(runs.c.ds == f.ds)
    if f.logical_date is not None:
        query = query.where(runs.c.logical_date == f.logical_date)
    return query


def job_history(
    conn: Connection,
    run_id: int,
    job_id: str | None = None,
    attempt_ids: list[int] | None = None,
    commands: bool = True,
) -> list[dict[str, Any]]:
    """Every job row of the run (or of ``attempt_ids``) with its tries (two queries), by attempt
    then job order. ``commands=False``: without the rendered commands (a JSON column per row)."""
    rows_q = select(*[c for c in job_runs.c if commands or c.name != "command"]).where(
        job_runs.c.run_id == run_id
    )
    tries_q = select(*[c for c in job_tries.c if c.name not in ("stdout_tail", "stderr_tail")]).where(
        job_tries.c.run_id == run_id
    )
    if attempt_ids is not None:
        rows_q = rows_q.where(job_runs.c.attempt_id.in_(attempt_ids))
        tries_q = tries_q.where(job_tries.c.attempt_id.in_(attempt_ids))
    if job_id is not None:
        rows_q = rows_q.where(job_runs.c.job_id == job_id)
        tries_q = tries_q.where(job_tries.c.job_id == job_id)
    tries: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    for t in conn.execute(tries_q.order_by(job_tries.c.try_number)):
        tries[(t.attempt_id, t.job_id)].append(
            {
                "try": t.try_number,
                "status": t.status,
                "exit_code": t.exit_code,
                "start_time": t.start_time,
                "end_time": t.end_time,
                "duration": t.duration,
                "delay_before": t.delay_before,
                "worker": t.worker,
                "error": t.error,
            }
        )
    out = []
    for r in conn.execute(rows_q.order_by(job_runs.c.attempt_id)):
        out.append({**r._asdict(), "retry_history": tries.get((r.attempt_id, r.job_id), [])})
    return out


def try_rows(conn: Connection, run_id: int, job_id: str, attempt_id: int) -> list[Row]:
    """A job's ended tries in one attempt, their output tails included, in try order."""
    return list(
        conn.execute(
            select(job_tries)
            .where(
                job_tries.c.run_id == run_id,
                job_tries.c.job_id == job_id,
                job_tries.c.attempt_id == attempt_id,
            )
            .order_by(job_tries.c.try_number)
        )
    )


def last_tails(conn: Connection, run_id: int, keys: list[tuple[int, str]]) -> dict[str, dict[str, Any]]:
    """The last ended try of each (attempt, job) in ``keys``, with its output tails (one query)."""
    if not keys:
        return {}
    wanted = set(keys)
    rows = conn.execute(
        select(
            job_tries.c.attempt_id,
            job_tries.c.job_id,
            job_tries.c.try_number,
            job_tries.c.stdout_tail,
            job_tries.c.stderr_tail,
            job_tries.c.error,
        )
        .where(job_tries.c.run_id == run_id, job_tries.c.job_id.in_(sorted({j for _, j in keys})))
        .order_by(job_tries.c.attempt_id, job_tries.c.try_number)
    )
    return {r.job_id: r._asdict() for r in rows if (r.attempt_id, r.job_id) in wanted}


def run_version(conn: Connection, run_id: int) -> tuple:
    """Changes whenever anything a run page shows does (statuses, tries, attempts, audit): three small
    aggregates, so a page that polls re-renders only when there is something new."""
    jobs = conn.execute(
        select(job_runs.c.attempt_id, job_runs.c.status, func.count(), func.max(job_runs.c.retry_count))
        .where(job_runs.c.run_id == run_id)
        .group_by(job_runs.c.attempt_id, job_runs.c.status)
        .order_by(job_runs.c.attempt_id, job_runs.c.status)
    ).all()
    tries = conn.execute(
        select(func.count(), func.max(job_tries.c.end_time)).where(job_tries.c.run_id == run_id)
    ).one()
    events = conn.execute(
        select(func.count(), func.max(audit_events.c.id)).where(audit_events.c.run_id == run_id)
    ).one()
    last = conn.execute(
        select(attempts.c.attempt_id, attempts.c.status)
        .where(attempts.c.run_id == run_id)
        .order_by(attempts.c.attempt_id.desc())
        .limit(1)
    ).first()
    return (tuple(map(tuple, jobs)), tuple(tries), tuple(events), tuple(last or ()))


def latest_statuses(conn: Connection, run_ids: list[int]) -> dict[int, str]:
    """The latest attempt's status of each run (one query)."""
    if not run_ids:
        return {}
    rows = conn.execute(
        select(attempts.c.run_id, attempts.c.status)
        .where(attempts.c.run_id.in_(run_ids))
        .order_by(attempts.c.run_id, attempts.c.attempt_id)
    )
    return {run_id: status for run_id, status in rows}


def audit_trail(conn: Connection, run_id: int) -> list[dict[str, Any]]:
    """Audit records and forced attempts of a run, ordered as the history orders them (two queries)."""
    events = [
        {
            "action": r.action,
            "jobs": list(r.job_ids),
            "actor": r.actor,
            "at": r.at,
            "after_attempt": r.after_attempt,
            "attempt_id": r.attempt_id,
            "details": dict(r.details or {}),
            # Manual actions sit between attempts; those an attempt made (--from-job) start it.
            "_order": (r.after_attempt, 1 if r.attempt_id is None else 2, r.id),
        }
        for r in conn.execute(select(audit_events).where(audit_events.c.run_id == run_id))
    ]
    forced = conn.execute(
        select(
            attempts.c.attempt_id, attempts.c.user, attempts.c.host, attempts.c.start_time, attempts.c.changes
        ).where(attempts.c.run_id == run_id, attempts.c.forced.is_(True))
    )
    events += [
        {
            "action": "forced_resume",
            "jobs": sorted({c.get("job") for c in (r.changes or []) if c.get("job")}),
            "actor": f"{r.user}@{r.host}",
            "at": r.start_time,
            "after_attempt": r.attempt_id - 1,
            "attempt_id": r.attempt_id,
            "details": {"changes": len(r.changes or [])},
            "_order": (r.attempt_id - 1, 2, 0),
        }
        for r in forced
    ]
    events.sort(key=lambda e: e["_order"])
    for e in events:
        del e["_order"]
    return events
