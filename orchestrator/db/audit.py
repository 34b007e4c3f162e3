"""The audit trail's one writer: every action a person or an attempt records (mark-success, rollback,
cancel) goes through ``record_action``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert

from orchestrator.db.schema import audit_events, utcnow


def record_action(
    conn: Connection,
    *,
    run_id: int,
    action: str,
    job_ids: list[str],
    actor: str,
    after_attempt: int,
    attempt_id: int | None,
    details: dict[str, Any],
    at: datetime | None = None,
) -> None:
    # Values as execution parameters, never written into the statement: SQLAlchemy's compiled-
    # statement cache keeps the first statement of each shape for the engine's life, and with it any
    # value inside — ``job_ids`` may name 100,000 jobs, and the web view's engine lives for days.
    conn.execute(
        insert(audit_events),
        {
            "run_id": run_id,
            "action": action,
            "job_ids": job_ids,
            "actor": actor,
            "at": at or utcnow(),
            "after_attempt": after_attempt,
            "attempt_id": attempt_id,
            "details": details,
        },
    )
