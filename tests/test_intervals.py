"""Slots and data intervals: Airflow's convention, time zones with DST, month ends, backfill ranges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.intervals import (
    backfill_intervals,
    floor_slot,
    manual_interval,
    next_slot,
    parse_every,
    prev_slot,
    scheduled_interval,
    slots_between,
)
from orchestrator.workflow import Schedule

PARIS = ZoneInfo("Europe/Paris")


def paris(*args) -> datetime:
    return datetime(*args, tzinfo=PARIS).astimezone(UTC)


NIGHTLY = Schedule("0 2 * * *", timezone="Europe/Paris")


def test_the_nightly_run_of_the_28th_processes_the_27th():
    iv = scheduled_interval(NIGHTLY, paris(2026, 11, 28, 2))
    assert (iv.start, iv.end, iv.logical_date) == (paris(2026, 11, 27, 2), paris(2026, 11, 28, 2), iv.start)
    assert iv.logical_date.astimezone(PARIS).date().isoformat() == "2026-11-27"


def test_spring_forward_the_skipped_hour_fires_once_after_the_gap():
    # 29 March 2026: 02:00 does not exist in Paris; the slot is 03:00 CEST, intervals stay contiguous.
    slots = slots_between(NIGHTLY, paris(2026, 3, 27, 12), paris(2026, 3, 31, 12))
    assert [s.astimezone(PARIS).strftime("%d %H:%M %z") for s in slots] == [
        "28 02:00 +0100",
        "29 03:00 +0200",
        "30 02:00 +0200",
        "31 02:00 +0200",
    ]
    iv = scheduled_interval(NIGHTLY, slots[2])
    assert (iv.start, iv.end) == (slots[1], slots[2]) and iv.end - iv.start == timedelta(hours=23)


def test_fall_back_a_fixed_hour_fires_once_an_hourly_schedule_every_real_hour():
    # 25 October 2026: 02:00-03:00 happens twice in Paris.
    slots = slots_between(NIGHTLY, paris(2026, 10, 23, 12), paris(2026, 10, 27, 12))
    assert [s.astimezone(PARIS).strftime("%d %H:%M %z") for s in slots] == [
        "24 02:00 +0200",
        "25 02:00 +0200",
        "26 02:00 +0100",
        "27 02:00 +0100",
    ]
    assert scheduled_interval(NIGHTLY, slots[2]).end - scheduled_interval(
        NIGHTLY, slots[2]
    ).start == timedelta(hours=25)
    hourly = Schedule("0 * * * *", timezone="Europe/Paris")
    utc_hours = slots_between(
        hourly, datetime(2026, 10, 24, 22, tzinfo=UTC), datetime(2026, 10, 25, 3, tzinfo=UTC)
    )
    assert [s.hour for s in utc_hours] == [23, 0, 1, 2, 3]  # every real hour, none twice, none lost


def test_month_ends():
    monthly = Schedule("0 0 1 * *", timezone="Europe/Paris")
    iv = scheduled_interval(monthly, paris(2026, 3, 1))
    assert (iv.start, iv.end) == (paris(2026, 2, 1), paris(2026, 3, 1))
    last_day = Schedule("0 6 L * *")
    slots = slots_between(last_day, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    assert [s.day for s in slots] == [31, 28, 31]
    assert scheduled_interval(last_day, slots[1]).start == slots[0]


def test_a_manual_run_gets_the_interval_containing_its_logical_date():
    iv = manual_interval(NIGHTLY, paris(2026, 11, 27, 10))
    assert (iv.start, iv.end, iv.logical_date) == (
        paris(2026, 11, 27, 2),
        paris(2026, 11, 28, 2),
        paris(2026, 11, 27, 10),
    )
    on_a_slot = manual_interval(NIGHTLY, paris(2026, 11, 27, 2))
    assert on_a_slot.start == paris(2026, 11, 27, 2)  # the same interval the scheduler gives that night
    bare = manual_interval(None, datetime(2026, 1, 1, tzinfo=UTC))
    assert bare.start == bare.end == bare.logical_date


def test_backfill_selects_the_slots_whose_logical_date_is_in_range():
    found = backfill_intervals(NIGHTLY, paris(2026, 11, 1), paris(2026, 11, 4))
    assert [iv.logical_date.astimezone(PARIS).day for iv in found] == [1, 2, 3]
    assert all(scheduled_interval(NIGHTLY, iv.end) == iv for iv in found)  # the scheduler's own runs
    steps = backfill_intervals(
        None, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC), parse_every("6h")
    )
    assert [iv.start.hour for iv in steps] == [0, 6, 12, 18] and steps[-1].end == datetime(
        2026, 1, 2, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="more than 10,000 slots"):
        backfill_intervals(
            Schedule("* * * * *"), datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
        )


@pytest.mark.parametrize("text", ["0d", "1y", "d", "-1d", "1.5h", "30s", "9999999d"])
def test_bad_steps_are_refused(text):
    with pytest.raises(ValueError, match="--every"):
        parse_every(text)


@settings(max_examples=30, deadline=None)
@given(
    cron=st.sampled_from(
        ["0 2 * * *", "30 2 * * *", "0 * * * *", "15 1,2,3 * * *", "0 0 1 * *", "0 3 * * 0"]
    ),
    tz=st.sampled_from(["Europe/Paris", "America/New_York", "Australia/Lord_Howe", "UTC"]),
    start=st.datetimes(
        min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 1), timezones=st.just(UTC)
    ),
)
def test_intervals_tile_time(cron, tz, start):
    """Consecutive slots' intervals meet exactly, no slot repeats, floor/prev/next agree."""
    schedule = Schedule(cron, timezone=tz)
    slots = slots_between(schedule, start, start + timedelta(days=10))
    assert slots == sorted(set(slots))
    for before, after in pairwise(slots):
        assert scheduled_interval(schedule, after).start == before
        assert next_slot(schedule, before) == after and prev_slot(schedule, after) == before
        assert floor_slot(schedule, after) == after
        assert floor_slot(schedule, after - timedelta(seconds=1)) == before
