"""The scheduler with a driven clock: slots, catch-up, overlap, and two schedulers at once."""

from __future__ import annotations

import json
import signal
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from orchestrator.context import Context
from orchestrator.db.engine import read_tx
from orchestrator.db.schema import schedule_slots
from orchestrator.errors import UserError
from orchestrator.scheduler import Outcome, Scheduler, plan_slots, slots_between
from orchestrator.settings import Settings
from orchestrator.workflow import Schedule

T0 = datetime(2026, 1, 15, 10, 0, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    def wait(self, until: datetime, stop: threading.Event) -> bool:
        self.current = max(self.current, until)
        return stop.is_set()


class FakeRun:
    def __init__(self) -> None:
        self.done = False

    def poll(self):
        return 0 if self.done else None


class FakeLauncher:
    def __init__(self) -> None:
        self.fired: list[tuple[str, datetime]] = []
        self.runs: list[FakeRun] = []

    def __call__(self, workflow, interval):
        self.fired.append((workflow.application_name, interval.end))
        run = FakeRun()
        self.runs.append(run)
        return run

    def finish_all(self) -> None:
        for run in self.runs:
            run.done = True


def every_minute(**kw) -> Schedule:
    return Schedule("* * * * *", **kw)


def test_slots_follow_the_time_zone():
    daily = Schedule("0 2 * * *", timezone="Europe/Paris")
    slots = slots_between(daily, T0, T0 + timedelta(days=2))
    assert [s.isoformat() for s in slots] == ["2026-01-16T01:00:00+00:00", "2026-01-17T01:00:00+00:00"]


def test_an_on_time_slot_fires():
    (d,) = plan_slots(every_minute(), T0, T0 + timedelta(minutes=1, seconds=2))
    assert (d.slot, d.outcome) == (T0 + timedelta(minutes=1), Outcome.FIRED)


@pytest.mark.parametrize(
    ("catchup", "fired_hours"),
    [("latest", [15]), ("none", []), ("all", [13, 14, 15])],
)
def test_catch_up_after_downtime(catchup, fired_hours):
    hourly = Schedule("0 * * * *", catchup=catchup, catchup_limit=3)
    now = T0.replace(hour=15, minute=5)  # down from 10:00 to 15:05: 11:00 ... 15:00 were missed
    decisions = plan_slots(hourly, T0, now)
    assert [d.slot.hour for d in decisions if d.outcome == Outcome.FIRED] == fired_hours
    assert max(d.slot for d in decisions) == T0.replace(hour=15)  # the watermark moves past them all


def wf_file(tmp_path, name="nightly", **schedule):
    path = tmp_path / f"{name}.json"
    path.write_text(
        json.dumps(
            {
                "application_name": name,
                "schedule": "* * * * *",
                **schedule,
                "jobs": [{"id": "a", "command": "true"}],
            }
        )
    )
    return str(path)


@pytest.fixture
def ctx(tmp_path, database_url):  # SQLite and PostgreSQL
    c = Context(Settings.from_env({}, home=tmp_path, database_url=database_url))
    yield c
    c.close()


def slot_rows(ctx):
    with read_tx(ctx.engine) as conn:
        return [
            (r.slot, r.outcome, r.fired_by)
            for r in conn.execute(select(schedule_slots).order_by(schedule_slots.c.slot))
        ]


def test_two_schedulers_fire_each_slot_exactly_once(ctx, tmp_path):
    path = wf_file(tmp_path, schedule_overlap="allow")
    clock = FakeClock(T0 + timedelta(seconds=5))
    a_launcher, b_launcher = FakeLauncher(), FakeLauncher()
    a = Scheduler(ctx, [path], clock=clock, launcher=a_launcher, name="a")
    b = Scheduler(ctx, [path], clock=clock, launcher=b_launcher, name="b")
    for minute in range(1, 6):
        clock.current = T0 + timedelta(minutes=minute, seconds=1)
        first, second = (a, b) if minute % 2 else (b, a)
        first.tick(clock.now())
        second.tick(clock.now())
    fired = sorted(a_launcher.fired + b_launcher.fired)
    assert [s for _, s in fired] == [T0 + timedelta(minutes=m) for m in range(1, 6)]
    assert {name for _, _, name in slot_rows(ctx)} == {"a", "b"}  # both took turns winning


def test_overlap_skip_waits_for_the_previous_run(ctx, tmp_path):
    launcher = FakeLauncher()
    clock = FakeClock(T0)
    s = Scheduler(ctx, [wf_file(tmp_path)], clock=clock, launcher=launcher, name="s")
    s.tick(T0 + timedelta(minutes=1))
    assert s.tick(T0 + timedelta(minutes=2))[0][2] == Outcome.SKIPPED_OVERLAP
    launcher.finish_all()
    assert s.tick(T0 + timedelta(minutes=3))[0][2] == Outcome.FIRED
    assert len(launcher.fired) == 2


def test_a_restarted_scheduler_catches_up_from_the_history(ctx, tmp_path):
    path = wf_file(tmp_path, schedule_overlap="allow")
    launcher = FakeLauncher()
    Scheduler(ctx, [path], clock=FakeClock(T0), launcher=launcher).tick(T0 + timedelta(minutes=1))
    later = T0 + timedelta(minutes=11, seconds=20)  # down since 10:01; 10:11 is on time
    restarted = Scheduler(ctx, [path], clock=FakeClock(later), launcher=launcher)
    done = restarted.tick(later)
    assert [(slot, outcome) for _, slot, outcome in done] == [
        (T0 + timedelta(minutes=10), Outcome.SKIPPED_MISSED),
        (T0 + timedelta(minutes=11), Outcome.FIRED),
    ]
    assert len(launcher.fired) == 2


def test_a_workflow_without_schedule_is_refused(ctx, tmp_path):
    path = tmp_path / "plain.json"
    path.write_text(json.dumps({"application_name": "p", "jobs": [{"id": "a", "command": "true"}]}))
    with pytest.raises(UserError, match="schedule"):
        Scheduler(ctx, [str(path)])


def test_the_scheduler_command_starts_and_stops_cleanly_on_sigterm(cli, tmp_path):
    path = wf_file(tmp_path, "tick")
    bad = cli("scheduler", tmp_path / "missing.yaml")
    assert bad.code == 2 and "file not found" in bad.err
    proc = cli.popen("scheduler", path)
    try:
        started = proc.stderr.readline()  # blocks until the first log line (pytest-timeout guards it)
        assert "1 workflow(s): tick" in started
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped" in err


def test_two_schedulers_on_celery_run_a_per_minute_workflow_once_per_slot(
    tmp_path, database_url, shared_redis, shared_workers
):
    """Real Redis and workers, real `executioner run` processes; only the clock is driven."""
    shared_redis.reset()
    ledger = tmp_path / "ledger"
    path = tmp_path / "minutely.json"
    path.write_text(
        json.dumps(
            {
                "application_name": "minutely",
                "schedule": "* * * * *",
                "schedule_overlap": "allow",
                "jobs": [{"id": "stamp", "command": f'echo "$EXECUTIONER_RUN_ID" >> {ledger}'}],
            }
        )
    )
    settings = Settings.from_env(
        {}, home=tmp_path / "home", database_url=database_url, broker_url=shared_redis.url
    )
    clock = FakeClock(T0 + timedelta(seconds=5))
    with Context(settings) as one, Context(settings) as two:
        schedulers = [
            Scheduler(one, [str(path)], clock=clock, name="one"),
            Scheduler(two, [str(path)], clock=clock, name="two"),
        ]
        for minute in (1, 2, 3):
            clock.current = T0 + timedelta(minutes=minute, seconds=3)
            threads = [threading.Thread(target=s.tick, args=(clock.now(),)) for s in schedulers]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        children = [c.process for s in schedulers for c in s.children]
        assert len(children) == 3
        for child in children:
            assert child.wait(120) == 0
        from orchestrator.inspection import run_status
        from orchestrator.listing import runs_list

        runs = runs_list(one, 10)["runs"]
        assert len(runs) == 3 and all(r["status"] == "SUCCESS" for r in runs)
        reasons = sorted(run_status(one, r["run_id"])["attempts"][0]["trigger_reason"] for r in runs)
        assert [r.split(" slot ")[1] for r in reasons] == [
            (T0 + timedelta(minutes=m)).isoformat() for m in (1, 2, 3)
        ]
        assert all(run_status(one, r["run_id"])["attempts"][0]["triggered_by"] == "scheduler" for r in runs)
        assert run_status(one, runs[0]["run_id"])["attempts"][0]["executor"] == "celery"
    assert sorted(ledger.read_text().split()) == ["1", "2", "3"]
