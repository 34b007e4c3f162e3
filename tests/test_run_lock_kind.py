"""A run is guarded by the lock it was started with, whatever a later shell's configuration says.

An earlier version had ``status`` look for the lock kind its *own* settings implied: from a shell with
a broker set, a live local run looked unlocked, so ``status`` took a Redlock, bumped the epoch and
killed the running coordinator's job. Inspection now never locks, fences or kills; write commands
use the run's recorded lock, or refuse with one line naming what to configure.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select
from support import poll

from orchestrator.db.engine import make_engine
from orchestrator.db.schema import runs


def _run_row(database_url: str):
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(runs.c.epoch, runs.c.lock_kind, runs.c.lock_servers)).one()
    finally:
        engine.dispose()


def test_a_live_local_run_survives_status_and_mark_success_from_a_shell_with_a_broker(
    cli, work, database_url
):
    gate = work.flag("gate")
    jobs = [work.job("a", command=f"while [ ! -f {gate} ]; do sleep 0.05; done"), work.job("b", ["a"])]
    proc = cli.popen("run", work.workflow(jobs), "--json", env={"EXECUTIONER_LEASE_TTL": "3"})
    assert poll(lambda: "a" in work.ran(), 30)
    before = _run_row(database_url)
    assert before.lock_kind == "sql" and before.lock_servers == []
    # A broker nobody listens on: had anything tried to use it, the command would have failed.
    elsewhere = {"EXECUTIONER_BROKER_URL": "redis://127.0.0.1:9/0"}
    for _ in range(3):  # over more than one lease TTL
        st = cli("status", 1, "--json", env=elsewhere)
        assert st.code == 0, st
        assert st.json()["status"] == "RUNNING" and st.json()["locked_by"]["what"] == "run"
        ms = cli("mark-success", 1, "b", "--force", env=elsewhere)
        assert ms.code == 3 and "locked by" in ms.err, ms  # the run's own (SQL) lock, held
    assert _run_row(database_url).epoch == before.epoch  # nobody fenced the live coordinator
    gate.touch()
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert work.ran() == ["a", "b"]


@pytest.mark.redis
def test_a_celery_run_refuses_commands_that_cannot_reach_its_lock(celery_cli, work, database_url):
    gate = work.flag("gate")
    jobs = [work.job("a", command=f"while [ ! -f {gate} ]; do sleep 0.05; done")]
    proc = celery_cli.popen("run", work.workflow(jobs), "--json")
    assert poll(lambda: "a" in work.ran(), 60)
    before = _run_row(database_url)
    assert before.lock_kind == "redlock" and len(before.lock_servers) == 1
    no_broker = {"EXECUTIONER_BROKER_URL": ""}
    for args in (("status", 1), ("mark-success", 1, "a"), ("rollback", 1, "a"), ("resume", 1)):
        r = celery_cli(*args, env=no_broker)
        assert r.code == 2, (args, r)
        assert len(r.err.strip().splitlines()) == 1 and "EXECUTIONER_BROKER_URL" in r.err, (args, r)
    assert _run_row(database_url).epoch == before.epoch
    gate.touch()
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


@pytest.mark.redis
def test_a_thirty_day_timeout_is_supervised_on_celery(celery_cli, work):
    r = celery_cli("run", work.workflow([work.job("a", timeout=2_592_000, max_retries=1)]), "--json")
    assert r.code == 0, r
    rows = celery_cli("history", 1, "--json").json()["rows"]
    assert [t["status"] for t in rows[0]["retry_history"]] == ["SUCCESS"] and work.ran() == ["a"]
