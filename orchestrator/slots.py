"""The slot claim, shared by the scheduler and backfill: one run per (application, slot), ever.

A slot's row in ``schedule_slots`` (unique per application and slot time) is the claim. Its outcome:

    firing  -> fired   with its run id, in the transaction that creates the run (``mark_fired``)
    firing  -> failed  with the reason, when the fire could not create a run (``mark_failed``)
    failed | skipped_* -> firing   a later backfill takes the slot over (``reclaim``)

so a slot is never ``fired`` without a run, and two claimers (two schedulers, a scheduler and a
backfill, two backfills of one range) never both start a run for it: the insert or the conditional
update succeeds for exactly one of them, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, Row, and_, insert, select, update
from sqlalchemy.exc import IntegrityError

from orchestrator.db.engine import read_tx, write_tx
from orchestrator.db.schema import schedule_slots, utcnow
from orchestrator.errors import UserError

FIRING = "firing"
FIRED = "fired"
FAILED = "failed"
SKIPPED_OVERLAP = "skipped_overlap"  # overlap=skip and the previous scheduled run still ran
SKIPPED_MISSED = "skipped_missed"  # missed during downtime, not caught up per the policy
RECLAIMABLE = (FAILED, SKIPPED_OVERLAP, SKIPPED_MISSED)
FIRING_TIMEOUT = timedelta(minutes=10)  # a claim with no run after this: its process died
MAX_REASON = 2000


def claim(
    engine: Engine,
    app: str,
    slot: datetime,
    by: str,
    outcome: str = FIRING,
    reason: str = "",
    notify: tuple = (),
) -> bool:
    """Insert the slot's row; False when someone else has it. A ``failed`` one raises the
    ``scheduler_failed`` notification of ``notify`` rules in the same transaction."""
    try:
        with write_tx(engine) as conn:
            if outcome == FAILED:
                _alert(conn, notify, app, slot, reason)
            conn.execute(
                insert(schedule_slots).values(
                    application_name=app,
                    slot=slot,
                    fired_at=utcnow(),
                    fired_by=by[:300],
                    outcome=outcome,
                    reason=reason[:MAX_REASON] or None,
                )
            )
    except IntegrityError:
        return False
    return True


def reclaim(engine: Engine, app: str, slot: datetime, by: str) -> bool:
    """Take over a slot whose earlier fire failed or was skipped; False when someone else did."""
    with write_tx(engine) as conn:
        done = conn.execute(
            update(schedule_slots)
            .where(_key(app, slot), schedule_slots.c.outcome.in_(RECLAIMABLE))
            .values(outcome=FIRING, fired_at=utcnow(), fired_by=by[:300], reason=None)
        )
        return done.rowcount == 1


def mark_fired(conn: Connection, app: str, slot: datetime, run_id: int) -> None:
    """In the transaction that creates the run: the claim becomes the run (or the whole start fails)."""
    done = conn.execute(
        update(schedule_slots)
        .where(_key(app, slot), schedule_slots.c.outcome == FIRING)
        .values(outcome=FIRED, run_id=run_id, reason=None)
    )
    if done.rowcount != 1:
        raise UserError(f"{app}: slot {slot.isoformat()} is not claimed for this run (already fired?)")


def mark_failed(engine: Engine, app: str, slot: datetime, reason: str, notify: tuple = ()) -> bool:
    """A claimed slot whose fire did not create a run; False if it had already fired or failed."""
    with write_tx(engine) as conn:
        done = conn.execute(
            update(schedule_slots)
            .where(_key(app, slot), schedule_slots.c.outcome == FIRING)
            .values(outcome=FAILED, reason=reason[:MAX_REASON])
        )
        if done.rowcount == 1:
            _alert(conn, notify, app, slot, reason)
        return done.rowcount == 1


def _alert(conn: Connection, notify: tuple, app: str, slot: datetime, reason: str) -> None:
    if not notify:
        return
    from orchestrator.notify import outbox_rows, record

    payload = {
        "title": f"{app}: the scheduled run of {slot.isoformat()} was not started",
        "text": f"{app}: slot {slot.isoformat()} failed: {reason}",
        "application_name": app,
        "slot": slot.isoformat(),
        "reason": reason[:MAX_REASON],
    }
    record(
        conn,
        outbox_rows(notify, "scheduler_failed", payload, run_id=None, attempt_id=None, key=f"{app}:{slot}"),
    )


def get(conn: Connection, app: str, slot: datetime) -> Row | None:
    return conn.execute(select(schedule_slots).where(_key(app, slot))).first()


def in_range(engine: Engine, app: str, first: datetime, last: datetime) -> dict[datetime, Row]:
    """The rows of ``app``'s slots in [first, last], by slot time (one query for a whole backfill)."""
    with read_tx(engine) as conn:
        rows = conn.execute(
            select(schedule_slots).where(
                schedule_slots.c.application_name == app,
                schedule_slots.c.slot >= first,
                schedule_slots.c.slot <= last,
            )
        )
        return {r.slot: r for r in rows}


def stale_claims(engine: Engine, now: datetime) -> list[Row]:
    """Claims left ``firing`` for longer than ``FIRING_TIMEOUT``: the process that held them died."""
    with read_tx(engine) as conn:
        return list(
            conn.execute(
                select(schedule_slots).where(
                    schedule_slots.c.outcome == FIRING, schedule_slots.c.fired_at < now - FIRING_TIMEOUT
                )
            )
        )


def recent(conn: Connection, app: str, limit: int) -> list[Row]:
    return list(
        conn.execute(
            select(schedule_slots)
            .where(schedule_slots.c.application_name == app)
            .order_by(schedule_slots.c.slot.desc())
            .limit(limit)
        )
    )


def _key(app: str, slot: datetime):
    return and_(schedule_slots.c.application_name == app, schedule_slots.c.slot == slot)
