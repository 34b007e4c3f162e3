"""Operating a pipeline: what manual actions do to a run's status, audit trail, cancel (issue 11)."""

from __future__ import annotations

import json
import signal
import time

import pytest

pytestmark = pytest.mark.slow


def test_a_run_status_follows_mark_success_and_rollback(cli, work):
    wf = work.workflow([work.job("a"), work.job("b", ["a"], command="exit 3")])
    assert cli("run", wf).code == 1
    assert cli("mark-success", 1, "b").code == 0
    assert cli("status", 1, "--json").json()["status"] == "SUCCESS"
    assert cli("runs", "--json").json()["runs"][0]["status"] == "SUCCESS"
    assert cli("runs", "--status", "SUCCESS", "--json").json()["runs"][0]["run_id"] == 1
    assert cli("runs", "--status", "FAILED", "--json").json()["runs"] == []
    nothing = cli("resume", 1, "--json")
    assert nothing.code == 0 and nothing.json()["status"] == "SUCCESS" and nothing.json()["nothing_to_do"]
    assert cli("rollback", 1, "b").code == 0
    assert cli("status", 1, "--json").json()["status"] == "PARTIAL"  # b back to PENDING
    assert cli("runs", "--json").json()["runs"][0]["status"] == "PARTIAL"
    again = cli("resume", 1, "--json")  # b fails again: the new attempt's status is the run's
    assert again.code == 1 and cli("status", 1, "--json").json()["status"] == "FAILED"


def test_audit_shows_who_did_what_and_a_repeated_mark_is_idempotent(cli, work):
    wf = work.workflow([work.job("a", command="exit 1"), work.job("b", ["a"])])
    assert cli("run", wf).code == 1
    first = cli("mark-success", 1, "a", "--json")
    assert first.code == 0 and first.json()["jobs"] == ["a"]
    again = cli("mark-success", 1, "a", "--json")
    assert again.code == 0 and again.json()["jobs"] == [] and again.json()["unchanged"] == ["a"]
    assert cli("rollback", 1, "b").code == 0  # b was UPSTREAM_FAILED: back to PENDING
    assert cli("rollback", 1, "b", "--json").json()["unchanged"] == ["b"]  # already PENDING
    wf.write_text(wf.read_text().replace("exit 1", "exit 0"))
    assert cli("resume", 1, "-c", wf, "--force").code == 0
    events = cli("audit", 1, "--json").json()["events"]
    assert [e["action"] for e in events] == ["mark_success", "rollback", "forced_resume"]
    mark = events[0]
    assert mark["jobs"] == ["a"] and mark["after_attempt"] == 1 and "@" in mark["actor"] and mark["at"]
    assert events[2]["attempt_id"] == 2 and events[2]["after_attempt"] == 1
    text = cli("audit", 1)
    assert text.code == 0 and "mark_success" in text.out and "forced_resume" in text.out
    assert cli("audit", 99).code == 2


def test_cancel_from_another_process_stops_a_live_run_on_both_executors(ex, work):
    started = work.root / "started"
    wf = work.workflow(
        [
            {"id": "slow", "command": f"touch {started}; sleep 60"},
            {"id": "after", "command": "true", "dependencies": ["slow"]},
        ]
    )
    run = ex.popen("run", wf, "--json")
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert started.exists()
    r = ex("cancel", 1, "--wait", "--json", "--timeout", "60")
    assert r.code == 0 and r.json()["status"] == "CANCELLED" and r.json()["how"] == "requested", r
    out, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    jobs = json.loads(out)["jobs"]
    assert jobs["slow"]["status"] == "CANCELLED" and jobs["after"]["status"] == "CANCELLED"
    events = ex("audit", 1, "--json").json()["events"]
    assert [(e["action"], e["attempt_id"]) for e in events] == [("cancel", 1)]
    again = ex("cancel", 1)
    assert again.code == 2 and "not running" in again.err
    assert ex("cancel", 42).code == 2


def test_logs_read_whole_outputs_from_the_store_on_both_executors(ex, work):
    wf = work.workflow(
        [
            {
                "id": "big",
                "command": "head -c 5000000 /dev/zero | tr '\\0' z; echo; echo done >&2; exit 1",
                "max_retries": 1,
            }
        ]
    )
    assert ex("run", wf).code == 1
    r = ex("logs", 1, "big")
    assert r.code == 0, r
    assert r.out.count("=== attempt 1 try") == 2
    assert ("z" * 5000000) in r.out and "[… " not in r.out
    only = ex("logs", 1, "big", "--try", "2")
    assert only.out.count("=== attempt 1 try 2") == 1 and "try 1" not in only.out
    assert ex("logs", 1, "big", "--try", "3").code == 2
    tail = ex("history", 1, "--json")  # the history keeps the marked tail
    assert tail.code == 0


def test_logs_of_a_job_that_has_not_run_and_follow_while_it_runs(cli, work):
    gate = work.root / "gate"
    wf = work.workflow(
        [
            {"id": "talk", "command": f"echo first; while [ ! -e {gate} ]; do sleep 0.05; done; echo second"},
            {"id": "later", "command": "echo later", "dependencies": ["talk"]},
        ]
    )
    run = cli.popen("run", wf)
    deadline = time.monotonic() + 60
    while cli("status", 1).code != 0 and time.monotonic() < deadline:  # the run exists from its start
        time.sleep(0.1)
    follower = cli.popen("logs", 1, "talk", "--follow")
    line = follower.stdout.readline()  # pytest-timeout guards it
    assert line.strip() == "first"  # seen while the job still runs (it waits for the gate)
    waiting = cli("logs", 1, "later")
    assert waiting.code == 0 and "PENDING, no output yet" in waiting.err
    gate.touch()
    out, err = follower.communicate(timeout=60)
    assert out.strip() == "second" and "job talk: SUCCESS" in err
    assert run.wait(60) == 0


def test_prune_is_a_dry_run_until_yes(cli, work):
    wf = work.workflow([work.job("a", command="echo hello")])
    assert cli("run", wf).code == 0
    assert cli("run", wf).code == 0
    dry = cli("prune", "--older-than", "1m", "--json").json()
    assert dry["runs"] == [] and not dry["deleted"]  # too recent
    everything = cli("prune", "--older-than", "0m", "--json").json()
    assert (
        everything["runs"] == [1, 2] and everything["rows"]["job_tries"] == 2 and everything["log_bytes"] > 0
    )
    assert not everything["deleted"] and len(cli("runs", "--json").json()["runs"]) == 2
    assert "would remove" in cli("prune", "--older-than", "0m").out
    gone = cli("prune", "--older-than", "0m", "--yes", "--json").json()
    assert gone["deleted"] and gone["runs"] == [1, 2]
    assert cli("runs", "--json").json()["runs"] == [] and cli("status", 1).code == 2
    assert cli("prune", "--older-than", "0m", "--json").json()["runs"] == []
    assert cli("prune", "--older-than", "soon").code == 2
    assert cli("run", wf, "--json").json()["run_id"] == 3  # ids are never reused


def test_cleanup_jobs_after_a_failure_then_resume(ex, work):
    wf = work.workflow(
        [
            work.job("a", command=f"test -e {work.flag('a')}"),
            work.job("cleanup", ["a"], trigger_rule="all_done"),
            work.job("alert", ["a"], trigger_rule="one_failed"),
            work.job("report", ["a"]),
        ]
    )
    first = ex("run", wf, "--json")
    assert first.code == 1, first  # a failed: the run is FAILED even though its cleanups succeeded
    jobs = first.json()["jobs"]
    assert [jobs[j]["status"] for j in ("a", "cleanup", "alert", "report")] == [
        "FAILED",
        "SUCCESS",
        "SUCCESS",
        "UPSTREAM_FAILED",
    ]
    work.flag("a").touch()
    work.clear()
    again = ex("resume", 1, "--json")
    assert again.code == 0 and again.json()["status"] == "SUCCESS", again
    assert sorted(work.ran()) == ["a", "report"]  # the cleanups ran for that failure already
    fine = ex("run", wf, "--json")
    assert fine.code == 0 and fine.json()["status"] == "SUCCESS"
    assert fine.json()["jobs"]["alert"]["status"] == "SKIPPED"
    history = ex("history", 2, "--job", "alert", "--json").json()["rows"]
    assert history[0]["reason"] == "trigger_rule"


def test_max_run_time_stops_the_attempt_as_failed(cli, work):
    wf = work.workflow(
        [
            work.job("slow", command="sleep 30"),
            work.job("after", ["slow"]),
            work.job("quick"),
        ],
        max_run_time=1.5,
    )
    r = cli("run", wf, "--json")
    assert r.code == 1, r  # a failure, not an interruption by the user
    data = r.json()
    assert data["status"] == "FAILED"
    assert data["jobs"]["slow"]["status"] == "CANCELLED" and data["jobs"]["after"]["status"] == "CANCELLED"
    assert data["jobs"]["quick"]["status"] == "SUCCESS"
    assert cli("status", 1, "--json").json()["attempts"][0]["end_reason"] == "deadline"


def test_an_sla_missed_is_alerted_once_by_the_scheduler(tmp_path, database_url, work):
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select

    from orchestrator.context import Context
    from orchestrator.db.engine import read_tx
    from orchestrator.db.schema import notifications
    from orchestrator.deadlines import check_slas
    from orchestrator.loader import load_workflow
    from orchestrator.settings import Settings

    wf = work.workflow(
        [work.job("a", command="exit 1")],
        sla=60,
        notify=[{"on": ["deadline_missed"], "command": "cat"}],
    )
    settings = Settings.from_env({}, home=tmp_path / "home", database_url=database_url)
    import subprocess
    import sys

    env = {
        "EXECUTIONER_HOME": str(tmp_path / "home"),
        "EXECUTIONER_DATABASE_URL": database_url,
        "PATH": "/usr/bin:/bin",
    }
    subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", str(wf)], env=env, check=False)
    with Context(settings) as ctx:
        workflows = {"test_app": load_workflow(wf)}
        now = datetime.now(UTC)
        assert check_slas(ctx.engine, workflows, now) == 0  # not late yet
        assert check_slas(ctx.engine, workflows, now + timedelta(minutes=2)) == 1
        assert check_slas(ctx.engine, workflows, now + timedelta(minutes=3)) == 1  # still late ...
        with read_tx(ctx.engine) as conn:
            rows = conn.execute(select(notifications.c.event, notifications.c.run_id)).all()
    assert rows == [("deadline_missed", 1)]  # ... alerted once


def test_a_queue_nobody_consumes_times_out_as_error(celery_cli, work, caplog):
    wf = work.workflow(
        [
            work.job("nowhere", queue="nobody-consumes-this", queue_timeout=2),
            work.job("after", ["nowhere"]),
            work.job("fine"),
        ]
    )
    r = celery_cli("run", wf, "--json")
    assert r.code == 1, r
    jobs = r.json()["jobs"]
    assert jobs["nowhere"]["status"] == "ERROR" and jobs["after"]["status"] == "UPSTREAM_FAILED"
    assert jobs["fine"]["status"] == "SUCCESS"
    row = celery_cli("history", 1, "--job", "nowhere", "--json").json()["rows"][0]
    assert row["reason"] == "queue_timeout" and "no worker started it within 2s" in row["detail"]
    assert "nowhere" not in work.ran()  # withdrawn: no worker will ever run it


def test_status_says_a_queue_has_no_consumer(celery_cli, work):
    wf = work.workflow([work.job("waits", queue="nobody-here")])
    run = celery_cli.popen("run", wf)
    try:
        deadline = time.monotonic() + 60
        st = {}
        while time.monotonic() < deadline:
            r = celery_cli("status", 1, "--json")
            st = r.json() if r.code == 0 else {}
            if st.get("queues"):
                break
            time.sleep(0.3)
        assert st["queues"] == {"nobody-here": False}
        text = celery_cli("status", 1)
        assert "queue 'nobody-here': no worker consuming" in text.err
    finally:
        run.send_signal(signal.SIGINT)
        run.communicate(timeout=60)


def test_the_queue_watch_reports_each_unconsumed_queue_once():
    from orchestrator.queue_watch import PROBE_SECONDS, WAIT_BEFORE_PROBE, QueueWatch

    now = [0.0]
    watch = QueueWatch(clock=lambda: now[0])

    class T:
        def __init__(self, queue):
            self.queue = queue

    watch.queued_now("a", T("heavy"), timeout=None)
    watch.queued_now("b", T("default"), timeout=5)
    asked = []
    consumers = lambda qs: asked.append(set(qs)) or {"default"}  # noqa: E731
    assert watch.unconsumed(consumers) == [] and asked == []  # nobody waited long yet
    assert watch.next_deadline() == 5 and watch.timed_out() == []
    now[0] = WAIT_BEFORE_PROBE
    assert watch.unconsumed(consumers) == ["heavy"] and asked == [{"heavy", "default"}]
    assert [j for j, _, _ in watch.timed_out()] == ["b"]
    assert watch.unconsumed(consumers) == []  # probed at most every PROBE_SECONDS
    now[0] += PROBE_SECONDS
    assert watch.unconsumed(consumers) == ["heavy"] and watch.said == {"heavy"}


def test_the_queue_watch_reports_timeouts_in_deadline_order_once_and_not_for_jobs_that_left():
    from orchestrator.queue_watch import QueueWatch

    now = [0.0]
    watch = QueueWatch(clock=lambda: now[0])

    class T:
        queue = "q"

    watch.queued_now("slow", T(), timeout=30)
    watch.queued_now("none", T(), timeout=None)
    watch.queued_now("fast", T(), timeout=5)
    watch.queued_now("gone", T(), timeout=1)
    watch.left_queue("gone")  # started before its deadline
    now[0] = 2.0
    watch.queued_now("again", T(), timeout=5)  # queued, left, queued again later: the new deadline counts
    watch.left_queue("again")
    watch.queued_now("again", T(), timeout=5)
    assert watch.next_deadline() == 5 and watch.timed_out() == []
    now[0] = 6.0
    assert watch.timed_out() == [("fast", "q", 5)] and watch.timed_out() == []
    assert watch.next_deadline() == 7.0
    now[0] = 100.0
    assert [j for j, _, _ in watch.timed_out()] == ["again", "slow"]
    assert watch.next_deadline() is None and list(watch.queued) == ["slow", "none", "fast", "again"]


@pytest.mark.parametrize("pause", ["1.2", "0"])
def test_follow_a_job_running_on_a_celery_worker(celery_cli, work, pause):
    """The worker asks at most once a second whether someone follows. With a pause, "second" comes
    after it noticed (published live); without, the try may end first: the follower then prints the
    whole try from the store — "second" exactly once either way."""
    gate, started = work.root / "gate", work.root / "started"
    wf = work.workflow(
        [
            {
                "id": "talk",
                "command": f"echo first; touch {started}; sleep {pause}; "
                f"while [ ! -e {gate} ]; do sleep 0.05; done; echo second",
            }
        ]
    )
    run = celery_cli.popen("run", wf)
    try:
        deadline = time.monotonic() + 60
        while not started.exists():  # follow as soon as it printed "first"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        if pause != "0":
            time.sleep(float(pause))
        follower = celery_cli.popen("logs", 1, "talk", "--follow")
        assert "RUNNING" in follower.stderr.readline()  # it follows now (pytest-timeout guards it)
        gate.touch()
        out, err = follower.communicate(timeout=60)
        assert out.count("second") == 1 and "job talk: SUCCESS" in err, (out, err)
    finally:
        assert run.wait(60) == 0
