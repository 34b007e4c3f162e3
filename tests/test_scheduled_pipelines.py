"""Scheduled pipelines end to end through the CLI: parameters, templates, the job environment rule,
data intervals, backfill, the scheduler's slot claims, resume warnings. Both executors where the
executor matters; SQLite and PostgreSQL everywhere."""

from __future__ import annotations

import json
import signal
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from orchestrator import slots
from orchestrator.context import Context
from orchestrator.db.engine import read_tx
from orchestrator.db.schema import schedule_slots
from orchestrator.intervals import scheduled_interval
from orchestrator.launch import SlotRequest, slot_to_json
from orchestrator.scheduler import Outcome, Scheduler
from orchestrator.settings import Settings
from orchestrator.workflow import Schedule

pytestmark = pytest.mark.slow


def daily(work, jobs, name="wf.yaml", **top):
    return work.workflow(jobs, name=name, schedule="0 2 * * *", timezone="Europe/Paris", **top)


def test_templates_parameters_and_the_job_environment_on_both_executors(ex, work):
    """The documented rule: the process's environment + pass_env (pinned at run) + env + EXECUTIONER_*;
    nothing else of the submitting shell reaches a Celery worker; a resume from another shell sees the
    values of the first."""
    out = work.root / "out"
    show = 'echo "{{ ds }} n={{ params.n }} $EXECUTIONER_PARAM_N $EXECUTIONER_LOGICAL_DATE pinned=$PINNED other=${OTHER:-unset}"'
    wf = daily(
        work,
        [
            {"id": "a", "command": f"{show} >> {out}"},
            {"id": "b", "dependencies": ["a"], "command": f"{show} >> {out}; test -e {work.flag('b')}"},
        ],
        params={"n": {"type": "int", "required": True}},
        pass_env=["PINNED"],
    )
    missing = ex("run", wf)
    assert missing.code == 2 and "parameter 'n' is required" in missing.err
    assert ex("runs", "--json").json()["runs"] == []  # refused: nothing written
    first = ex(
        "run", wf, "--param", "n=3", "--logical-date", "2026-11-27", env={"PINNED": "one", "OTHER": "x"}
    )
    assert first.code == 1, first
    celery = "EXECUTIONER_BROKER_URL" in ex.env
    other = "unset" if celery else "x"  # local: the coordinator's environment, as with make or cron
    line = f"2026-11-27 n=3 3 2026-11-26T23:00:00+00:00 pinned=one other={other}"
    assert out.read_text().splitlines() == [line, line]
    work.flag("b").touch()
    refused = ex("resume", 1, "--param", "n=4")
    assert refused.code == 2 and "parameters belong to the run" in refused.err
    again = ex("resume", 1, "--json", env={"PINNED": "two"})  # another shell, another value
    assert again.code == 0 and again.json()["status"] == "SUCCESS", again
    assert again.json()["params"] == {"n": 3} and again.json()["ds"] == "2026-11-27"
    # same date, same parameters, same pinned value (OTHER was only in the first shell)
    assert out.read_text().splitlines()[-1] == line.replace("other=x", "other=unset")
    st = ex("status", 1, "--json").json()
    assert st["params"] == {"n": 3} and st["ds"] == "2026-11-27"
    assert st["logical_date"] == "2026-11-26T23:00:00+00:00"
    assert (st["data_interval_start"], st["data_interval_end"]) == (
        "2026-11-26T01:00:00+00:00",
        "2026-11-27T01:00:00+00:00",
    )
    assert st["pass_env"] == {"PINNED": "one"}
    assert "2026-11-27 n=3" in st["commands"]["a"]
    (run,) = ex("runs", "--json").json()["runs"]
    assert run["params"] == {"n": 3} and run["logical_date"] == st["logical_date"]
    rows = ex("history", 1, "--json").json()["rows"]
    assert all("{{" not in r["command"] for r in rows if r["command"])
    assert ex("runs", "--logical-date", "2026-11-27", "--json").json()["runs"][0]["run_id"] == 1
    assert ex("runs", "--logical-date", "2026-11-28", "--json").json()["runs"] == []
    assert ex("runs", "--workflow", "nope", "--json").json()["runs"] == []
    assert ex("runs", "--status", "SUCCESS", "--json").json()["runs"][0]["run_id"] == 1


def test_template_errors_and_dry_runs_write_nothing(cli, work):
    wf = work.workflow([{"id": "a", "command": "echo {{ ds }} {{ nope }}"}])
    for args in (("validate", wf), ("run", wf), ("run", wf, "--dry-run")):
        r = cli(*args)
        assert r.code == 2 and "job 'a': field 'command': template error: 'nope' is undefined" in (
            r.err + r.out
        ), r
    escape = work.workflow([{"id": "a", "command": "{{ ''.__class__.__mro__ }}"}], name="escape.yaml")
    assert "not allowed in the sandbox" in cli("validate", escape).err
    good = work.workflow([{"id": "a", "command": "echo {{ ds }}"}], name="good.yaml")
    dry = cli("run", good, "--dry-run", "--json", "--logical-date", "2026-01-02T03:04:05Z").json()
    assert dry["commands"] == {"a": "echo 2026-01-02"} and dry["logical_date"] == "2026-01-02T03:04:05+00:00"
    params_file = work.root / "p.json"
    params_file.write_text(json.dumps({"x": 1}))
    r = cli("run", good, "--params-file", params_file)
    assert r.code == 2 and "unknown parameter 'x'" in r.err
    assert cli("runs", "--json").json()["runs"] == []


def test_resume_warns_about_an_edited_file_and_refuses_another_pipeline(cli, work):
    wf = work.workflow([work.job("a", command=f"test -e {work.flag('a')}")])
    assert cli("run", wf).code == 1
    wf.write_text(wf.read_text().replace("test -e", "test -f"))
    dry = cli("resume", 1, "--dry-run", "--json").json()
    assert len(dry["warnings"]) == 1 and f"pass -c {wf}" in dry["warnings"][0]
    r = cli("resume", 1, "--json")
    assert r.code == 1 and f"warning: {wf} changed since attempt 1" in r.err and r.json()["warnings"]
    other = work.workflow([work.job("a")], name="other.yaml", application_name="another_app")
    refused = cli("resume", 1, "-c", other, "--force")
    assert refused.code == 2 and "another pipeline" in refused.err


def test_a_failed_backfilled_run_resumed_processes_the_same_date(cli, work):
    out = work.root / "days"
    wf = daily(
        work, [{"id": "a", "command": f"echo {{{{ ds }}}} >> {out}; test ! -e {work.root}/bad-{{{{ ds }}}}"}]
    )
    (work.root / "bad-2026-11-02").touch()
    dry = cli("backfill", wf, "--start", "2026-11-01", "--end", "2026-11-04", "--dry-run", "--json").json()
    assert [s["action"] for s in dry["slots"]] == ["run"] * 3 and cli("runs", "--json").json()["runs"] == []
    first = cli("backfill", wf, "--start", "2026-11-01", "--end", "2026-11-04", "--json")
    assert first.code == 1
    assert [(s["ds"], s["status"]) for s in first.json()["slots"]] == [
        ("2026-11-01", "SUCCESS"),
        ("2026-11-02", "FAILED"),
        ("2026-11-03", "SUCCESS"),
    ]
    assert "slot 2026-11-02" in first.err  # live progress on stderr
    (work.root / "bad-2026-11-02").unlink()
    report = cli("backfill", wf, "--start", "2026-11-01", "--end", "2026-11-04", "--json").json()
    assert [s["action"] for s in report["slots"]] == ["skip", "report", "skip"]
    again = cli("backfill", wf, "--start", "2026-11-01", "--end", "2026-11-04", "--rerun-failed", "--json")
    assert again.code == 0, again
    slots_ = again.json()["slots"]
    assert [s["action"] for s in slots_] == ["skip", "resume", "skip"]
    assert slots_[1]["run_id"] == first.json()["slots"][1]["run_id"]  # the same run, resumed
    assert out.read_text().split() == ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-02"]
    runs = cli("runs", "--json").json()["runs"]
    assert len(runs) == 3 and all(r["status"] == "SUCCESS" for r in runs)


def test_ctrl_c_stops_a_backfill_and_cancels_its_running_run(cli, work):
    started = work.root / "started"
    wf = work.workflow(
        [{"id": "a", "command": f"echo {{{{ ds }}}} >> {started}; sleep 60"}], name="slow.yaml"
    )
    proc = cli.popen(
        "backfill", wf, "--start", "2026-01-01", "--end", "2026-01-04", "--every", "1d", "--json"
    )
    deadline = datetime.now(UTC) + timedelta(seconds=60)
    while not started.exists() and datetime.now(UTC) < deadline:
        threading.Event().wait(0.1)
    assert started.exists(), proc.stderr.read() if proc.poll() is not None else "no run started"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    data = json.loads(out)
    assert data["interrupted"] and data["slots"][0]["status"] == "CANCELLED"
    assert started.read_text().split() == ["2026-01-01"]  # nothing more was started
    runs = cli("runs", "--json").json()["runs"]
    assert [r["status"] for r in runs] == ["CANCELLED"]


def test_two_backfills_of_one_range_at_once_give_one_run_per_slot(cli, work):
    wf = work.workflow(
        [{"id": "a", "command": f"echo {{{{ ds }}}} >> {work.ledger}; sleep 0.2"}], name="nosched.yaml"
    )
    args = ("backfill", wf, "--start", "2026-01-01", "--end", "2026-01-05", "--every", "1d", "--json")
    procs = [cli.popen(*args, "--max-active-runs", "2") for _ in range(2)]
    results = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode in (0, 1) for p in procs), results
    assert sorted(work.ran()) == ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"]
    runs = cli("runs", "--json").json()["runs"]
    assert sorted(r["logical_date"][:10] for r in runs) == [
        "2026-01-01",
        "2026-01-02",
        "2026-01-03",
        "2026-01-04",
    ]
    refused = cli("backfill", wf, "--start", "2026-01-01", "--end", "2026-01-05")
    assert refused.code == 2 and "--every" in refused.err


@pytest.fixture
def ctx(tmp_path, database_url):
    c = Context(Settings.from_env({}, home=tmp_path / "home", database_url=database_url))
    yield c
    c.close()


class FakeClock:
    def __init__(self, now):
        self.current = now

    def now(self):
        return self.current

    def wait(self, until, stop):
        self.current = max(self.current, until)
        return stop.is_set()


class Exited:
    def __init__(self, code):
        self.code = code

    def poll(self):
        return self.code


def slot_rows(ctx):
    with read_tx(ctx.engine) as conn:
        return {r.slot: r for r in conn.execute(select(schedule_slots))}


T0 = datetime(2026, 1, 15, 10, 0, 0, tzinfo=UTC)


def test_the_scheduler_never_loses_a_slot(ctx, work):
    """An invalid file, a template error, a run process that dies: each slot is recorded failed with
    its reason, no run, and the next valid slot fires. An application name with '/' works."""
    path = work.root / "minutely.json"

    def write(command="true", valid=True):
        data = {
            "application_name": "team/etl: nightly",
            "schedule": "* * * * *",
            "jobs": [{"id": "a", "command": command}],
        }
        if not valid:
            data["jobs"][0]["colour"] = "red"
        path.write_text(json.dumps(data))

    write()
    launched = []

    def launcher(workflow, interval):
        launched.append(interval)
        return Exited(None)

    scheduler = Scheduler(ctx, [str(path)], clock=FakeClock(T0), launcher=launcher, name="s")
    write(valid=False)
    minute = lambda m: T0 + timedelta(minutes=m)  # noqa: E731
    assert scheduler.tick(minute(1) + timedelta(seconds=1)) == [
        ("team/etl: nightly", minute(1), Outcome.FAILED)
    ]
    write("echo {{ nope }}")
    assert scheduler.tick(minute(2) + timedelta(seconds=1))[0][2] == Outcome.FAILED
    write()
    scheduler.launcher = lambda wf, iv: Exited(9)  # the run process dies before creating its run
    assert scheduler.tick(minute(3) + timedelta(seconds=1))[0][2] == Outcome.FIRED
    scheduler.launcher = launcher
    assert scheduler.tick(minute(4) + timedelta(seconds=1))[0][2] == Outcome.FIRED  # reaps minute 3 first
    rows = slot_rows(ctx)
    assert "unknown key" in rows[minute(1)].reason and rows[minute(1)].outcome == "failed"
    assert "'nope' is undefined" in rows[minute(2)].reason
    assert rows[minute(3)].outcome == "failed" and "exited with code 9" in rows[minute(3)].reason
    assert rows[minute(4)].outcome == "firing" and rows[minute(4)].run_id is None  # its run not created yet
    assert launched == [scheduled_interval(Schedule("* * * * *"), minute(4))]
    assert all(r.outcome != "fired" for r in rows.values())  # never fired without a run id


def test_a_run_started_for_a_slot_fires_it_with_its_run_id_or_fails_it_with_the_reason(cli, work):
    wf = work.workflow(
        [{"id": "a", "command": "echo {{ data_interval_end }}"}], name="s.yaml", schedule="0 * * * *"
    )
    settings = Settings.from_env(
        {}, home=cli.env["EXECUTIONER_HOME"], database_url=cli.env["EXECUTIONER_DATABASE_URL"]
    )
    schedule = Schedule("0 * * * *")
    with Context(settings) as ctx:
        good, bad = T0, T0 + timedelta(hours=1)
        for slot in (good, bad):
            assert slots.claim(ctx.engine, "test_app", slot, "test")
        slot_json = slot_to_json(SlotRequest("test_app", scheduled_interval(schedule, good)))
        ok = cli("run", wf, "--slot", slot_json, "--json")
        assert ok.code == 0, ok
        wf.write_text(wf.read_text().replace("data_interval_end", "nope"))
        refused = cli(
            "run", wf, "--slot", slot_to_json(SlotRequest("test_app", scheduled_interval(schedule, bad)))
        )
        assert refused.code == 2
        twice = cli("run", wf, "--slot", slot_json)
        assert twice.code == 2
        rows = slot_rows(ctx)
    assert (rows[good].outcome, rows[good].run_id) == ("fired", ok.json()["run_id"])
    assert rows[bad].outcome == "failed" and "'nope' is undefined" in rows[bad].reason
    assert len(cli("runs", "--json").json()["runs"]) == 1


def test_scheduler_once_and_schedule_list(cli, work):
    wf = work.workflow([work.job("a")], name="m.yaml", schedule="* * * * *", application_name="every_minute")
    r = cli("scheduler", "--once", wf)
    assert r.code == 0, r
    deadline = datetime.now(UTC) + timedelta(seconds=60)
    listing = {}
    while datetime.now(UTC) < deadline:
        listing = cli("schedule", "list", wf, "--json").json()["workflows"][0]
        if listing["last"] and listing["last"][0]["run_status"] == "SUCCESS":
            break
        threading.Event().wait(0.3)
    (last,) = listing["last"]
    assert last["outcome"] == "fired" and last["run_id"] == 1 and last["run_status"] == "SUCCESS"
    assert len(listing["next"]) == 5 and listing["schedule"] == "* * * * *"
    nxt = listing["next"][0]
    assert nxt["data_interval_end"] == nxt["fires_at"]
    assert cli("schedule", "list", "--json").json()["workflows"][0]["application_name"] == "every_minute"
    text = cli("schedule", "list", wf)
    assert text.code == 0 and "fired run 1 SUCCESS" in text.out
