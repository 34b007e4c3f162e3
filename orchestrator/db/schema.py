"""The history schema (SQLAlchemy Core). Alembic migrations in ``migrations/`` create exactly this.

History is append-only per attempt and per try: a job row belongs to one (run, attempt, job) and only
moves forward through the legal transitions of ``workers.statuses``; the current state of a run is
derived from these rows (``orchestrator.state``), never stored beside them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

# The newest migration in migrations/versions; a test checks it matches Alembic's head, so start-up
# can tell whether a database is current without loading Alembic.
HEAD_REVISION = "0005"


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in and out, whatever the database keeps (SQLite keeps naive strings)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the history")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# One row, written by the first migration: this database's identity. It scopes the keys runs use in
# Redis, so databases sharing a Redis (or a database recreated from scratch) never mix their runs.
installation = Table(
    "installation",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", Integer, primary_key=True, autoincrement=True),
    Column("application_name", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
    # Fencing token: bumped by every lock acquisition; writes carrying an older value are rejected.
    Column("epoch", Integer, nullable=False, default=0),
    # The lock that guards the run ("sql" lease or "redlock") and its servers, credentials removed:
    # every command on the run uses this lock, whatever its own configuration implies. NULL: a run
    # recorded before the kind was (see orchestrator.context.Context.locks_for).
    Column("lock_kind", String(20)),
    Column("lock_servers", JSON),
    # Added by migration 0004: what the run was given, pinned for every resume (orchestrator.run_inputs).
    # NULL in runs recorded before: they read as no parameters, logical date = created_at.
    Column("params", JSON),
    Column("logical_date", UTCDateTime),
    Column("data_interval_start", UTCDateTime),
    Column("data_interval_end", UTCDateTime),
    Column("ds", String(10)),  # the logical date's calendar day in the schedule's zone (runs --logical-date)
    Column("timezone", String(64)),
    Column("pass_env", JSON),
    Index(None, "application_name", "ds"),
    sqlite_autoincrement=True,  # run ids are never reused, even after the newest run is deleted
)

attempts = Table(
    "attempts",
    metadata,
    Column("run_id", Integer, ForeignKey("runs.run_id"), primary_key=True),
    Column("attempt_id", Integer, primary_key=True, autoincrement=False),
    Column("application_name", String(200), nullable=False),
    Column("status", String(20), nullable=False),
    Column("start_time", UTCDateTime, nullable=False),
    Column("end_time", UTCDateTime),
    Column("total_jobs", Integer, nullable=False),
    Column("successful_jobs", Integer, nullable=False, default=0),
    Column("failed_jobs", Integer, nullable=False, default=0),
    Column("skipped_jobs", Integer, nullable=False, default=0),
    Column("config_hash", String(64), nullable=False),
    # Attempts recorded before migration 0005 only; later ones write JSON null here and their
    # snapshot to attempt_snapshots (this row is updated when the attempt ends, and SQLite rewrites
    # a whole row: a 100,000-job snapshot, 35 MB, with it).
    Column("workflow_snapshot", JSON, nullable=False),
    Column("workflow_path", Text),
    # migration 0005: sha256 of the bytes of the file at workflow_path the snapshot was loaded from
    # (inherited by a resume of the stored workflow): an unchanged file is known without loading it.
    Column("workflow_sha256", String(64)),
    Column("triggered_by", String(50), nullable=False),
    Column("trigger_reason", Text),
    Column("parent_attempt_id", Integer),
    Column("host", String(255), nullable=False),
    Column("user", String(100), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("executor", String(20), nullable=False),
    Column("request", JSON, nullable=False),  # the flags it was started with
    Column("changes", JSON, nullable=False),  # workflow changes that went through, and how
    Column("forced", Boolean, nullable=False, default=False),
    Column("epoch", Integer, nullable=False),
    Column("end_reason", String(50)),  # migration 0004: why it ended so (e.g. "deadline")
)

# Migration 0005: the normalized workflow each attempt ran (orchestrator.workflow.Workflow.snapshot).
attempt_snapshots = Table(
    "attempt_snapshots",
    metadata,
    Column("run_id", Integer, primary_key=True),
    Column("attempt_id", Integer, primary_key=True, autoincrement=False),
    Column("snapshot", JSON, nullable=False),
    ForeignKeyConstraint(["run_id", "attempt_id"], ["attempts.run_id", "attempts.attempt_id"]),
)

job_runs = Table(
    "job_runs",
    metadata,
    Column("run_id", Integer, primary_key=True),
    Column("attempt_id", Integer, primary_key=True, autoincrement=False),
    Column("job_id", String(200), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("reason", String(50)),
    Column("detail", Text),
    Column("queue", String(200)),
    Column("start_time", UTCDateTime),
    Column("end_time", UTCDateTime),
    Column("duration", Float),
    Column("exit_code", Integer),
    Column("retry_count", Integer, nullable=False, default=0),
    Column("worker", String(255)),
    Column("pid", Integer),  # of the running try (local executor), to reap it if its coordinator dies
    Column("command", JSON),  # as rendered for this attempt (migration 0004); NULL: the snapshot's
    ForeignKeyConstraint(["run_id", "attempt_id"], ["attempts.run_id", "attempts.attempt_id"]),
)

job_tries = Table(
    "job_tries",
    metadata,
    Column("run_id", Integer, primary_key=True),
    Column("attempt_id", Integer, primary_key=True, autoincrement=False),
    Column("job_id", String(200), primary_key=True),
    Column("try_number", Integer, primary_key=True, autoincrement=False),
    Column("status", String(20), nullable=False),
    Column("exit_code", Integer),
    Column("start_time", UTCDateTime, nullable=False),
    Column("end_time", UTCDateTime, nullable=False),
    Column("duration", Float, nullable=False),
    Column("delay_before", Float, nullable=False, default=0.0),
    Column("worker", String(255), nullable=False),
    Column("pid", Integer),
    Column("error", Text),
    Column("stdout_tail", Text),
    Column("stderr_tail", Text),
    # Migration 0004: the complete output in the log store, and each stream's whole size.
    Column("log_uri", Text),
    Column("stdout_bytes", Integer),
    Column("stderr_bytes", Integer),
    ForeignKeyConstraint(
        ["run_id", "attempt_id", "job_id"],
        ["job_runs.run_id", "job_runs.attempt_id", "job_runs.job_id"],
    ),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.run_id"), nullable=False),
    Column("action", String(30), nullable=False),
    Column("job_ids", JSON, nullable=False),
    Column("actor", String(300), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    # Orders the action among attempts without trusting clocks (see orchestrator.state).
    Column("after_attempt", Integer, nullable=False),
    Column("attempt_id", Integer),  # set when an attempt did it (run/resume --from-job)
    Column("details", JSON, nullable=False),
    Index(None, "run_id", "id"),
)

run_leases = Table(
    "run_leases",
    metadata,
    Column("run_id", Integer, ForeignKey("runs.run_id"), primary_key=True),
    Column("token", String(64), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("what", String(50), nullable=False),
    Column("acquired_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

# Added by migration 0002 (the scheduler): one row per cron slot (keyed by the slot's time, the end of
# the data interval its run processes); the unique key is the claim that keeps two schedulers, or a
# scheduler and a backfill, from starting two runs for one slot. ``outcome`` moves firing -> fired
# (with run_id, in the transaction that creates the run) or firing -> failed (with ``reason``), see
# orchestrator.slots.
schedule_slots = Table(
    "schedule_slots",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("application_name", String(200), nullable=False),
    Column("slot", UTCDateTime, nullable=False),
    Column("fired_at", UTCDateTime, nullable=False),
    Column("fired_by", String(300), nullable=False),
    Column("run_id", Integer, ForeignKey("runs.run_id")),
    Column("outcome", String(30), nullable=False),
    Column("reason", Text),  # why a fire failed (migration 0004)
    UniqueConstraint("application_name", "slot"),
)

# Added by migration 0004: the notification outbox (orchestrator.notify). A row is written in the
# transaction of the state change that causes it and moves pending -> sending -> sent (or retrying ->
# ... -> failed after its tries); ``event_key`` makes writing the same event twice a no-op.
notifications = Table(
    "notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer),  # NULL: not about a run (scheduler_failed)
    Column("attempt_id", Integer),
    Column("event", String(30), nullable=False),
    Column("event_key", String(64), nullable=False),
    Column("sink", Text, nullable=False),  # as written in the workflow: never expanded
    Column("payload", JSON, nullable=False),
    Column("status", String(20), nullable=False),
    Column("tries", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("next_try_at", UTCDateTime, nullable=False),
    Column("claimed_by", String(300)),
    Column("claimed_at", UTCDateTime),
    Column("sent_at", UTCDateTime),
    UniqueConstraint("event_key"),
    Index(None, "status", "next_try_at"),
    Index(None, "run_id"),
)
