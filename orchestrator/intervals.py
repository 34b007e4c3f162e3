"""Schedule slots and data intervals: pure time arithmetic, no I/O (the scheduler and backfill share it).

A scheduled run for cron slot S processes the interval that S closes: ``data_interval_start`` = the
previous slot, ``data_interval_end`` = S, ``logical_date`` = ``data_interval_start`` (Airflow's
convention: the nightly 02:00 run of the 28th processes the 27th). Slots are wall-clock times in the
schedule's time zone. When clocks go back, a wall-clock time happens twice; like cron(8), a schedule
with a fixed hour fires once (at the first occurrence) while one with a wildcard hour (``0 * * * *``)
fires every real hour. A wall-clock time skipped when clocks go forward fires at the first minute
after the gap (croniter's behaviour, and cron's).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from orchestrator.workflow import Schedule

MAX_SLOTS = 10_000  # one backfill; past it the range or the step is a typo


@dataclass(frozen=True, slots=True)
class Interval:
    """A run's data interval and logical date, aware UTC datetimes."""

    start: datetime
    end: datetime
    logical_date: datetime

    def as_dict(self) -> dict[str, str]:
        return {
            "logical_date": self.logical_date.isoformat(),
            "data_interval_start": self.start.isoformat(),
            "data_interval_end": self.end.isoformat(),
        }


def _local(schedule: Schedule, when: datetime) -> datetime:
    return when.astimezone(ZoneInfo(schedule.timezone))


def _raw_next(schedule: Schedule, after: datetime) -> datetime:
    from croniter import croniter  # here: ~60 ms of imports that `status` and `run` do not need

    return croniter(schedule.cron, _local(schedule, after)).get_next(datetime)


def _raw_prev(schedule: Schedule, before: datetime) -> datetime:
    from croniter import croniter

    return croniter(schedule.cron, _local(schedule, before)).get_prev(datetime)


def _is_repeat(schedule: Schedule, slot: datetime) -> bool:
    """Is ``slot`` the second occurrence of a wall-clock time (clocks went back) of a fixed-hour cron?"""
    hour = schedule.cron.split()[1] if len(schedule.cron.split()) >= 5 else "*"
    if hour == "*" or hour.startswith("*/"):
        return False
    before = _raw_prev(schedule, slot)
    # Compared in UTC: aware datetimes sharing a tzinfo compare on wall time, ignoring the fold.
    return before.replace(tzinfo=None) == slot.replace(tzinfo=None) and before.astimezone(
        UTC
    ) != slot.astimezone(UTC)


def next_slot(schedule: Schedule, after: datetime) -> datetime:
    """The first slot strictly after ``after`` (UTC)."""
    slot = _raw_next(schedule, after)
    while _is_repeat(schedule, slot):
        slot = _raw_next(schedule, slot)
    return slot.astimezone(UTC)


def prev_slot(schedule: Schedule, before: datetime) -> datetime:
    """The last slot strictly before ``before`` (UTC)."""
    slot = _raw_prev(schedule, before)
    while _is_repeat(schedule, slot):
        slot = _raw_prev(schedule, slot)
    return slot.astimezone(UTC)


def slots_between(schedule: Schedule, after: datetime, upto: datetime, limit: int | None = None) -> list:
    """Slot times (UTC) with ``after < slot <= upto``; at most ``limit`` (the newest are dropped)."""
    slots: list[datetime] = []
    slot = next_slot(schedule, after)
    while slot <= upto and (limit is None or len(slots) < limit):
        slots.append(slot)
        slot = next_slot(schedule, slot)
    return slots


def floor_slot(schedule: Schedule, when: datetime) -> datetime:
    """The last slot at or before ``when``."""
    candidate = next_slot(schedule, when - timedelta(seconds=1))
    return candidate if candidate <= when else prev_slot(schedule, when)


def scheduled_interval(schedule: Schedule, slot: datetime) -> Interval:
    """The interval cron slot ``slot`` closes: [previous slot, slot), logical date its start."""
    start = prev_slot(schedule, slot)
    return Interval(start, slot.astimezone(UTC), start)


def manual_interval(schedule: Schedule | None, logical_date: datetime) -> Interval:
    """A manual run at ``logical_date``: the schedule's interval containing it, else [it, it]."""
    logical_date = logical_date.astimezone(UTC)
    if schedule is None:
        return Interval(logical_date, logical_date, logical_date)
    start = floor_slot(schedule, logical_date)
    return Interval(start, next_slot(schedule, start), logical_date)


def backfill_intervals(
    schedule: Schedule | None, start: datetime, end: datetime, every: timedelta | None = None
) -> list[Interval]:
    """Every interval whose logical date lies in [start, end), oldest first: the schedule's slots
    (each the interval it opens, so the run matches the one the scheduler fires at its end), or
    fixed steps of ``every`` from ``start`` without a schedule. More than ``MAX_SLOTS``: ValueError."""
    out: list[Interval] = []
    if every is not None:
        t = start
        while t < end:
            out.append(Interval(t, t + every, t))
            if len(out) > MAX_SLOTS:
                raise ValueError(f"more than {MAX_SLOTS:,} slots in the range; narrow it or widen --every")
            t += every
        return out
    assert schedule is not None
    t = floor_slot(schedule, start)
    if t < start:
        t = next_slot(schedule, t)
    while t < end:
        nxt = next_slot(schedule, t)
        out.append(Interval(t, nxt, t))
        if len(out) > MAX_SLOTS:
            raise ValueError(f"more than {MAX_SLOTS:,} slots in the range; narrow it")
        t = nxt
    return out


def parse_every(text: str) -> timedelta:
    """``30m``, ``6h``, ``1d``, ``1w`` (a whole number and one unit) as a timedelta; ValueError if not."""
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    text = text.strip()
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit() or len(number) > 6 or int(number) == 0:
        raise ValueError(f"--every {text!r}: expected a whole number and a unit (s, m, h, d, w), e.g. 1d")
    step = timedelta(**{units[unit]: int(number)})
    if step < timedelta(minutes=1):
        raise ValueError(f"--every {text!r}: the smallest step is 1m")
    return step
