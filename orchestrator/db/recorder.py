"""Writes one attempt's history: its start in one transaction, then batched job and try updates.

The coordinator's loop is the only caller, so nothing here is shared across threads. Updates to the
same job row inside one batch are merged (QUEUED -> RUNNING -> SUCCESS costs one UPDATE), tries are
inserted as they end (a crash mid-attempt keeps every finished try), and every write transaction
starts with the fencing check of ``orchestrator.db.fencing``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any, Protocol

from sqlalchemy import JSON, Connection, Engine, insert

from orchestrator.db.audit import record_action
from orchestrator.db.bulk import insert_many, insert_many_ignoring_duplicates, update_many
from orchestrator.db.closing import Totals, close_attempt
from orchestrator.db.engine import JsonText, write_tx
from orchestrator.db.fencing import check_epoch
from orchestrator.db.rows import ts
from orchestrator.db.schema import (
    attempt_snapshots,
    attempts,
    job_runs,
    job_tries,
    notifications,
    runs,
    utcnow,
)
from orchestrator.owner import LockOwner
from orchestrator.planner import Plan
from orchestrator.run_inputs import RunInputs, runnable, shown_command
from orchestrator.slots import mark_fired
from orchestrator.state import AuditAction
from orchestrator.workflow import JobDef, Workflow
from workers.spec import TryRecord
from workers.statuses import AttemptStatus, JobStatus

INSERT_SLICE = 5_000  # job rows per executemany when an attempt begins


@dataclass(slots=True)
class AttemptStart:
    """Everything recorded about an attempt when it begins."""

    workflow: Workflow
    plan: Plan
    owner: LockOwner
    executor: str
    triggered_by: str = "cli"
    trigger_reason: str = ""
    run_id: int | None = None  # None: a new run, its id comes from the database
    attempt_id: int = 1
    parent_attempt_id: int | None = None
    workflow_path: str | None = None
    workflow_sha256: str | None = None  # of the file at workflow_path, as the snapshot came from it
    request: dict[str, Any] = field(default_factory=dict)
    changes: list[dict] = field(default_factory=list)
    forced: bool = False
    # What the run was given (a new run stores it; a resume passes the stored one) and the jobs to
    # dispatch: ``workflow`` with its templates rendered (``None``: rendered at ``begin``, once the
    # new run has its id).
    inputs: RunInputs | None = None
    runnable: Workflow | None = None
    slot: datetime | None = None  # the schedule slot this new run fires (orchestrator.slots)

    @property
    def jobs_to_dispatch(self) -> dict[str, JobDef]:
        return (self.runnable or self.workflow).jobs


class Handle(Protocol):
    """What the recorder needs of the run's handle (``orchestrator.locks.base.RunHandle``)."""

    run_id: int | None
    attempt_id: int | None

    @property
    def epoch(self) -> int: ...

    @property
    def held(self) -> bool: ...

    def acquire(self, conn: Connection | None = None, run_id: int | None = None) -> Any: ...


class AttemptRecorder:
    def __init__(
        self,
        engine: Engine,
        *,
        flush_interval: float = 0.2,
        max_batch: int = 2000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self.clock = clock
        self.handle: Handle | None = None
        self._rows: dict[str, dict[str, Any]] = {}  # job -> merged column updates
        self._tries: list[dict[str, Any]] = []
        self._events: list[dict[str, Any]] = []  # notification rows, written with the tries
        self.notify_rules: tuple = ()
        self.application_name = ""
        self._since: float | None = None  # when the oldest unflushed change was made

    # -- the attempt's start: one transaction, so a refusal or a crash before it leaves nothing ----

    @property
    def run_id(self) -> int | None:
        return None if self.handle is None else self.handle.run_id

    @property
    def attempt_id(self) -> int | None:
        return None if self.handle is None else self.handle.attempt_id

    def begin(self, start: AttemptStart, handle: Handle, lock_kind: str, lock_servers: list[str]) -> None:
        """Write the attempt (and for a new run, the run, taking its lock in the same transaction)."""
        with write_tx(self.engine) as conn:
            if not handle.held:
                inputs = start.inputs.columns() if start.inputs is not None else {}
                run_id = conn.execute(
                    insert(runs).values(
                        application_name=start.workflow.application_name,
                        created_at=utcnow(),
                        created_by=start.owner.actor,
                        epoch=0,
                        lock_kind=lock_kind,
                        lock_servers=lock_servers,
                        **inputs,
                    )
                ).inserted_primary_key[0]
                if start.runnable is None and start.inputs is not None:
                    # Templates see the run id; a failure here rolls the run back (nothing written).
                    start.runnable = runnable(start.workflow, start.inputs, run_id)
                if start.slot is not None:
                    mark_fired(conn, start.workflow.application_name, start.slot, run_id)
                handle.acquire(conn, run_id)
            else:
                check_epoch(conn, handle.run_id, handle.epoch)
            handle.attempt_id = start.attempt_id
            self._insert_attempt(conn, handle.run_id, start, handle.epoch)
        self.handle = handle
        self.notify_rules = start.workflow.notify
        self.application_name = start.workflow.application_name

    def _insert_attempt(self, conn: Connection, run_id: int, start: AttemptStart, epoch: int) -> None:
        now = utcnow()
        # Values as execution parameters, never in the statement (why: ``orchestrator.db.audit``) —
        # here it kept the workflow snapshot (100,000 jobs: ~45 MB held by the coordinator).
        conn.execute(
            insert(attempts),
            dict(
                run_id=run_id,
                attempt_id=start.attempt_id,
                application_name=start.workflow.application_name,
                status=AttemptStatus.RUNNING,
                start_time=now,
                total_jobs=len(start.workflow),
                successful_jobs=0,
                failed_jobs=0,
                skipped_jobs=0,
                config_hash=start.workflow.config_hash,
                workflow_snapshot=JSON.NULL,  # in attempt_snapshots, below
                workflow_path=start.workflow_path,
                workflow_sha256=start.workflow_sha256,
                triggered_by=start.triggered_by,
                trigger_reason=start.trigger_reason,
                parent_attempt_id=start.parent_attempt_id,
                host=start.owner.host,
                user=start.owner.user,
                pid=start.owner.pid,
                executor=start.executor,
                request=start.request,
                changes=start.changes,
                forced=start.forced,
                epoch=epoch,
            ),
        )
        # Its own table: the attempt's row is rewritten when it ends, the snapshot never is.
        conn.execute(
            insert(attempt_snapshots),
            dict(
                run_id=run_id,
                attempt_id=start.attempt_id,
                snapshot=JsonText(start.workflow.snapshot_text()),  # built a job at a time
            ),
        )
        plan = start.plan
        for action, jobs in ((AuditAction.ROLLBACK, plan.rollbacks), (AuditAction.MARK_SUCCESS, plan.marks)):
            if jobs:
                record_action(
                    conn,
                    run_id=run_id,
                    action=action,
                    job_ids=list(jobs),
                    actor=start.owner.actor,
                    at=now,
                    after_attempt=start.attempt_id - 1,
                    attempt_id=start.attempt_id,
                    details={"via": "--from-job", "from_jobs": list(start.request.get("from_jobs", []))},
                )
        jobs = start.jobs_to_dispatch
        rows = (
            {
                "run_id": run_id,
                "attempt_id": start.attempt_id,
                "job_id": d.job_id,
                "status": str(JobStatus.PENDING if d.runs else JobStatus.SKIPPED),
                "reason": str(d.reason),
                "detail": d.detail or None,
                "queue": jobs[d.job_id].queue,
                "retry_count": 0,
                "command": shown_command(jobs[d.job_id]) if d.runs else None,
            }
            for d in plan.decisions.values()
        )
        # In slices, same transaction: 100,000 rows built at once were the coordinator's peak memory.
        while chunk := list(islice(rows, INSERT_SLICE)):
            insert_many(conn, job_runs, chunk)

    def attach(self, handle: Handle) -> None:
        """Write to an attempt that already exists (recovering an interrupted one)."""
        self.handle = handle

    # -- batched updates from the coordinator's loop -------------------------------------------------

    def job_update(self, job_id: str, **columns: Any) -> None:
        self._rows.setdefault(job_id, {}).update(columns)
        self._touch()

    def try_ended(self, job_id: str, record: TryRecord) -> None:
        self._tries.append(
            {
                "run_id": self.run_id,
                "attempt_id": self.attempt_id,
                "job_id": job_id,
                "try_number": record.try_number,
                "status": str(record.status),
                "exit_code": record.exit_code,
                "start_time": ts(record.start_time),
                "end_time": ts(record.end_time),
                "duration": record.duration,
                "delay_before": record.delay_before,
                "worker": record.worker,
                "pid": record.pid,
                "error": record.error,
                "stdout_tail": record.stdout_tail or None,
                "stderr_tail": record.stderr_tail or None,
                "log_uri": record.log_uri,
                "stdout_bytes": record.stdout_bytes,
                "stderr_bytes": record.stderr_bytes,
            }
        )
        self._touch()

    def retried(self, job_id: str, record: TryRecord) -> None:
        """A try failed and another follows: the ``retry`` event, written with the try's row."""
        if not any("retry" in rule.on for rule in self.notify_rules):
            return
        from orchestrator.notify import outbox_rows

        detail = record.error or f"exit {record.exit_code}"
        payload = {
            "title": f"{self.application_name}: {job_id} try {record.try_number} {record.status}, retrying",
            "text": f"{self.application_name} run {self.run_id} job {job_id} try {record.try_number}: "
            f"{record.status} ({detail}); retrying",
            "run_id": self.run_id,
            "attempt_id": self.attempt_id,
            "application_name": self.application_name,
            "job": job_id,
            "try": record.try_number,
            "status": str(record.status),
            "exit_code": record.exit_code,
        }
        self._events += outbox_rows(
            self.notify_rules,
            "retry",
            payload,
            run_id=self.run_id,
            attempt_id=self.attempt_id,
            key=f"{job_id}:{record.try_number}",
        )
        self._touch()

    def _touch(self) -> None:
        if self._since is None:
            self._since = self.clock()

    @property
    def pending(self) -> int:
        return len(self._rows) + len(self._tries) + len(self._events)

    def seconds_until_due(self) -> float | None:
        if self._since is None:
            return None
        if self.pending >= self.max_batch:
            return 0.0
        return max(0.0, self._since + self.flush_interval - self.clock())

    def flush(self, conn: Connection | None = None) -> None:
        """Write the buffered changes. Forgotten only once their transaction committed: a commit
        that fails (the database gone mid-flush) leaves every one for the next flush, which writes
        them again (idempotent). With ``conn``, the caller's transaction: it calls ``_written``."""
        if not self.pending:
            return
        if conn is None:
            with write_tx(self.engine) as own:
                self._flush(own)
            self._written()
        else:
            self._flush(conn)

    def _written(self) -> None:
        self._rows, self._tries, self._events, self._since = {}, [], [], None

    def _flush(self, conn: Connection) -> None:
        assert self.handle is not None
        check_epoch(conn, self.run_id, self.handle.epoch)
        # Job rows before tries: a try's foreign key needs its row, which exists since begin().
        groups: dict[tuple[str, ...], list[tuple[str, list[Any]]]] = {}
        for job_id, cols in self._rows.items():
            keys = tuple(sorted(cols))
            groups.setdefault(keys, []).append((job_id, [cols[k] for k in keys]))
        fixed = {"run_id": self.run_id, "attempt_id": self.attempt_id}
        for keys, rows in groups.items():
            update_many(conn, job_runs, fixed, "job_id", keys, rows)
        # Idempotent: events re-read after a crash between commit and acknowledgement repeat tries.
        insert_many_ignoring_duplicates(conn, job_tries, self._tries)
        if self._events:
            insert_many_ignoring_duplicates(conn, notifications, self._events)

    def finish(self, *, cancelled: bool, failed_reason: str | None = None) -> tuple[AttemptStatus, Totals]:
        """Flush what is left and close the attempt with the outcome its rows say (and its
        notifications), in one transaction."""
        assert self.handle is not None
        with write_tx(self.engine) as conn:
            check_epoch(conn, self.run_id, self.handle.epoch)
            self.flush(conn)
            closed = close_attempt(
                conn,
                self.run_id,
                self.attempt_id,
                cancelled=cancelled,
                notify=self.notify_rules,
                failed_reason=failed_reason,
            )
        self._written()
        return closed
