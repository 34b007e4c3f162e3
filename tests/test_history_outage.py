"""A history database that cannot be written for a while: nothing new starts, no result is lost.

Earlier versions kept dispatching, then died with a traceback, and finished jobs were recorded
``ERROR interrupted`` or ``PENDING`` and run again by resume (a full disk lost 39 finished jobs).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import datetime

import pytest
from support import poll

FAST = {"EXECUTIONER_LEASE_TTL": "3", "EXECUTIONER_FLUSH_INTERVAL": "0.05"}


def _hold_sqlite(path, seconds: float, held: threading.Event) -> threading.Thread:
    """Another program holding the database's write lock (``BEGIN EXCLUSIVE``) for ``seconds``."""

    def hold():
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        conn.execute("BEGIN EXCLUSIVE")
        held.set()
        threading.Event().wait(seconds)
        conn.execute("COMMIT")
        conn.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    return thread


def _chain(work, gate, side_gate=None):
    side = f"while [ ! -f {side_gate} ]; do sleep 0.02; done" if side_gate else None
    return [
        work.job("a", command=f"while [ ! -f {gate} ]; do sleep 0.02; done"),
        work.job("b", ["a"]),
        work.job("c", ["b"]),
        work.job("side", command=side),
    ]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("ex", ["local", "celery"], indirect=True)
def test_a_locked_sqlite_is_waited_out_and_nothing_starts_meanwhile(ex, work, home):
    cli = ex
    gate, side_gate = work.flag("gate"), work.flag("side")
    proc = cli.popen("run", work.workflow(_chain(work, gate, side_gate)), "--json", env=FAST)
    assert poll(lambda: "a" in work.ran() and "side" in work.ran(), 30)
    held = threading.Event()
    holder = _hold_sqlite(home / "executioner.db", 6, held)
    assert held.wait(10)
    side_gate.touch()  # side ends: its result cannot be written, the coordinator notices
    notice = proc.stderr.readline()  # blocks until it says so (pytest-timeout guards it)
    assert "cannot be written" in notice and "no new job starts" in notice, notice
    gate.touch()  # a ends during the outage: b must wait for the history to be back
    holder.join(30)
    released_at = time.time()
    _out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    assert "is back after" in err, err
    assert sorted(work.ran()) == ["a", "b", "c", "side"]  # each once
    rows = {r["job_id"]: r for r in cli("history", 1, "--json").json()["rows"]}
    assert {j: r["status"] for j, r in rows.items()} == dict.fromkeys(["a", "b", "c", "side"], "SUCCESS")
    b_started = datetime.fromisoformat(rows["b"]["start_time"]).timestamp()
    assert b_started >= released_at - 1.0, (b_started, released_at)  # retries come every <= 5 s


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_giving_up_stops_cleanly_and_resume_records_what_finished(cli, work, home):
    gate = work.flag("gate")
    jobs = [
        work.job("a", command=f"while [ ! -f {gate} ]; do sleep 0.02; done; exit 0"),
        work.job("b", ["a"]),
    ]
    env = {**FAST, "EXECUTIONER_HISTORY_PATIENCE": "2"}
    proc = cli.popen("run", work.workflow(jobs), "--json", env=env)
    assert poll(lambda: "a" in work.ran(), 30)
    held = threading.Event()
    holder = _hold_sqlite(home / "executioner.db", 8, held)
    assert held.wait(10)
    gate.touch()  # a finishes while the history is away: its result must survive the give-up
    _out, err = proc.communicate(timeout=90)
    assert proc.returncode == 1, err
    lines = [line for line in err.splitlines() if "stopped" in line]
    assert len(lines) == 1 and "executioner resume 1" in lines[0] and "Traceback" not in err, err
    holder.join(30)
    r = cli("resume", 1, "--json", env=FAST)
    assert r.code == 0, r
    assert work.ran() == ["a", "b"]  # a was not run again: its result came from the journal
    rows = {(r["attempt_id"], r["job_id"]): r for r in cli("history", 1, "--json").json()["rows"]}
    assert rows[(1, "a")]["status"] == "SUCCESS" and rows[(1, "a")]["exit_code"] == 0
    # b ran once: in attempt 2, or already in attempt 1 if it was dispatched before the outage was
    # noticed (then recorded from the journal too, and the attempt settled SUCCESS).
    assert [k for k, r in rows.items() if k[1] == "b" and r["status"] == "SUCCESS"] in (
        [(1, "b")],
        [(2, "b")],
    )
    assert cli("status", 1, "--json").json()["status"] == "SUCCESS"


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_postgresql_stopped_mid_run_loses_nothing(cli, work, postgres):
    gate = work.flag("gate")
    proc = cli.popen("run", work.workflow(_chain(work, gate)), "--json", env=FAST)
    assert poll(lambda: "a" in work.ran() and "side" in work.ran(), 30)
    postgres.pause_server()
    try:
        gate.touch()  # a ends during the outage
        assert poll(lambda: proc.poll() is not None, 5) is False  # the coordinator rides it out
    finally:
        postgres.resume_server()
    _out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    assert sorted(work.ran()) == ["a", "b", "c", "side"]
    rows = cli("history", 1, "--json").json()["rows"]
    assert {r["job_id"]: r["status"] for r in rows} == dict.fromkeys(["a", "b", "c", "side"], "SUCCESS")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_run_whose_jobs_all_finished_is_settled_as_success_not_interrupted(cli, work, home):
    gate = work.flag("gate")
    env = {**FAST, "EXECUTIONER_HISTORY_PATIENCE": "2"}
    proc = cli.popen(
        "run", work.workflow([work.job("a", command=f"while [ ! -f {gate} ]; do sleep 0.02; done")]), env=env
    )
    assert poll(lambda: "a" in work.ran(), 30)
    held = threading.Event()
    holder = _hold_sqlite(home / "executioner.db", 8, held)
    assert held.wait(10)
    gate.touch()
    assert proc.wait(90) == 1
    holder.join(30)
    assert cli("status", 1, "--json").json()["status"] == "SUCCESS"  # what settling will record
    r = cli("resume", 1, "--json", env=FAST)
    assert r.code == 0 and r.json()["nothing_to_do"] is True, r
    st = cli("status", 1, "--json").json()
    assert st["status"] == "SUCCESS" and [a["status"] for a in st["attempts"]] == ["SUCCESS"]
    assert work.ran() == ["a"]
