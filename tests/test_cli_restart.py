"""The restart rules end to end through the installed CLI, checking what really ran (the ledger).

Each seed scenario is its own test. ``ex`` is the CLI bound to one executor: the suite runs on the
local executor, and on Celery with real workers when a redis-server is available (see conftest).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from support import poll


def fails_in_attempt_1(work, job_id: str, deps=(), **fields) -> dict:
    """A job that fails on its first attempt only (exit 1), e.g. a bug fixed before the resume."""
    return work.job(job_id, deps, command='[ "$EXECUTIONER_ATTEMPT_ID" != 1 ]', **fields)


def attempts(ex, run_id=1) -> list[int]:
    return [a["attempt_id"] for a in ex("status", run_id, "--json").json()["attempts"]]


# -- the seed tool's scenarios ----------------------------------------------------------------------


def test_1_resume_after_partial_failure_with_a_fixed_command(ex, work):
    jobs = [
        work.job("extract"),
        work.job("transform", ["extract"], command="exit 1"),
        work.job("load", ["transform"]),
        work.job("audit", ["extract"]),
    ]
    assert ex("run", work.workflow(jobs)).code == 1
    assert sorted(work.ran()) == ["audit", "extract", "transform"]
    work.clear()
    jobs[1] = work.job("transform", ["extract"])  # the fix: a changed definition of a failed job
    r = ex("resume", 1, "-c", work.workflow(jobs), "--json")
    assert r.code == 0, r
    out = r.json()
    assert out["run_id"] == 1 and out["attempt_id"] == 2 and out["status"] == "SUCCESS"
    assert work.ran() == ["transform", "load"]
    assert out["jobs"]["extract"]["status"] == "SKIPPED"
    rows = ex("history", 1, "--json").json()["rows"]
    skipped = {r["job_id"]: r["reason"] for r in rows if r["attempt_id"] == 2 and r["status"] == "SKIPPED"}
    assert skipped == {"extract": "already_succeeded", "audit": "already_succeeded"}
    changes = ex("status", 1, "--json").json()["attempts"][1]["changes"]
    assert [(c["job"], c["field"], c["allowed_by"]) for c in changes] == [("transform", "command", "rule")]


def test_2_changed_definition_of_a_succeeded_job_is_refused_then_forced(ex, work):
    jobs = [work.job("a"), fails_in_attempt_1(work, "b", ["a"])]
    ex("run", work.workflow(jobs))
    jobs[0] = work.job("a", command="echo changed")
    changed = work.workflow(jobs)
    work.clear()
    r = ex("resume", 1, "-c", changed)
    assert r.code == 2 and "job 'a': command:" in r.err and "->" in r.err, r
    assert work.ran() == [] and attempts(ex) == [1]
    r = ex("resume", 1, "-c", changed, "--force", "--json")
    assert r.code == 0 and r.json()["attempt_id"] == 2
    assert work.ran() == ["b"]  # forced through, not re-run
    att = ex("status", 1, "--json").json()["attempts"][1]
    assert att["forced"] is True and att["changes"][0]["allowed_by"] == "force"


def test_3_from_job_runs_it_and_its_descendants(ex, work):
    jobs = [work.job("a"), work.job("b", ["a"]), work.job("c", ["b"]), work.job("other")]
    r = ex("run", work.workflow(jobs), "--from-job", "b", "--json")
    assert r.code == 0, r
    assert work.ran() == ["b", "c"]
    out = r.json()
    assert out["status"] == "PARTIAL"  # 'other' is left PENDING
    st = ex("status", 1, "--json").json()
    assert st["jobs"]["a"]["status"] == "SUCCESS" and st["jobs"]["a"]["marked"] is True
    assert st["jobs"]["other"]["status"] == "PENDING"
    rows = {r["job_id"]: r for r in ex("history", 1, "--json").json()["rows"]}
    assert (rows["a"]["status"], rows["a"]["reason"], rows["a"]["retry_history"]) == (
        "SKIPPED",
        "marked_success",
        [],
    )
    assert (rows["other"]["status"], rows["other"]["reason"]) == ("SKIPPED", "not_selected")
    work.clear()
    assert ex("resume", 1).code == 0
    assert work.ran() == ["other"]


def test_4_removed_job_is_refused(ex, work):
    jobs = [work.job("a"), fails_in_attempt_1(work, "b", ["a"]), work.job("c", ["a"])]
    ex("run", work.workflow(jobs))
    r = ex("resume", 1, "-c", work.workflow(jobs[:2]))
    assert r.code == 2 and "job 'c': removed" in r.err, r
    assert attempts(ex) == [1]
    dry = ex("resume", 1, "-c", work.workflow(jobs[:2]), "--dry-run", "--json")
    assert dry.code == 2 and dry.json()["valid"] is False
    assert any(c["kind"] == "removed" and c["job"] == "c" for c in dry.json()["changes"])


def test_5_three_concurrent_resumes_only_one_proceeds(ex, work):
    gate = work.flag("gate")
    jobs = [
        work.job("a"),
        work.job(
            "b",
            ["a"],
            command=(f'[ "$EXECUTIONER_ATTEMPT_ID" != 1 ] && while [ ! -f {gate} ]; do sleep 0.05; done'),
        ),
    ]
    ex("run", work.workflow(jobs))
    procs = [ex.popen("resume", 1, "--json") for _ in range(3)]
    poll(lambda: sum(p.poll() is not None for p in procs) >= 2, 60)
    losers = [p for p in procs if p.poll() is not None]
    assert len(losers) == 2, "two of the three resumes should have been refused while one runs"
    gate.touch()
    winner = next(p for p in procs if p not in losers)
    out, _ = winner.communicate(timeout=60)
    assert winner.returncode == 0 and json.loads(out)["attempt_id"] == 2
    for p in losers:
        _, err = p.communicate()
        assert p.returncode == 3 and "run 1 is locked by" in err and "pid" in err and "since" in err, err
    assert attempts(ex) == [1, 2]


def test_6_exit_codes_are_kept_and_drive_retries(ex, work):
    counter = work.root / "n"
    cmd = (
        f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; "
        f"[ $n -eq 1 ] && exit 75; exit 3"
    )
    jobs = [work.job("j", command=cmd, max_retries=5, retry_on_exit_codes=[75])]
    r = ex("run", work.workflow(jobs), "--json")
    assert r.code == 1 and r.json()["jobs"]["j"] == {"status": "FAILED", "exit_code": 3, "retry_count": 1}
    (row,) = ex("history", 1, "--json").json()["rows"]
    assert [(t["status"], t["exit_code"]) for t in row["retry_history"]] == [("FAILED", 75), ("FAILED", 3)]
    st = ex("status", 1, "--json").json()
    assert st["jobs"]["j"]["exit_code"] == 3


def test_7_retry_history_is_kept_on_success(ex, work):
    cmd = '[ "$EXECUTIONER_TRY" -ge 3 ]'
    r = ex("run", work.workflow([work.job("j", command=cmd, max_retries=4, retry_delay=0.05)]), "--json")
    assert r.code == 0 and r.json()["jobs"]["j"]["retry_count"] == 2
    (row,) = ex("history", 1, "--json").json()["rows"]
    assert [(t["try"], t["status"], t["exit_code"]) for t in row["retry_history"]] == [
        (1, "FAILED", 1),
        (2, "FAILED", 1),
        (3, "SUCCESS", 0),
    ]


def test_8_rollback_then_resume(ex, work):
    jobs = [work.job("a"), work.job("b", ["a"]), work.job("c", ["b"])]
    assert ex("run", work.workflow(jobs)).code == 0
    r = ex("rollback", 1, "b", "--json")
    assert r.code == 0 and r.json()["jobs"] == ["b", "c"]
    assert attempts(ex) == [1]  # no attempt for a rollback
    st = ex("status", 1, "--json").json()
    assert st["jobs"]["b"]["status"] == "PENDING" and st["next_attempt"]["will_run"] == ["b", "c"]
    work.clear()
    r = ex("resume", 1, "--json")
    assert r.code == 0 and r.json()["attempt_id"] == 2
    assert work.ran() == ["b", "c"]


# -- beyond the seed -----------------------------------------------------------------------------------


def test_midstream_with_a_side_branch_feeding_a_descendant(ex, work):
    # a -> b -> d ; a -> side -> d : --from-job b needs side (an ancestor of d) marked, not run
    jobs = [work.job("a"), work.job("b", ["a"]), work.job("side", ["a"]), work.job("d", ["b", "side"])]
    r = ex("run", work.workflow(jobs), "--from-job", "b", "--json")
    assert r.code == 0, r
    assert work.ran() == ["b", "d"]
    st = ex("status", 1, "--json").json()["jobs"]
    assert st["side"]["marked"] and st["a"]["marked"] and not st["d"]["marked"]


def test_failed_only_leaves_downstream_pending_then_a_plain_resume_finishes(ex, work):
    jobs = [
        work.job("a"),
        fails_in_attempt_1(work, "b", ["a"]),
        work.job("c", ["b"]),
        work.job("x", command=f"test -f {work.flag('x')}"),
    ]
    ex("run", work.workflow(jobs))
    work.clear()
    work.flag("x").touch()
    r = ex("resume", 1, "--failed-only", "--json")
    assert r.code == 0, r
    assert sorted(work.ran()) == ["b", "x"]
    assert r.json()["status"] == "PARTIAL"
    st = ex("status", 1, "--json").json()
    assert st["jobs"]["c"]["status"] == "UPSTREAM_FAILED"
    rows = [r for r in ex("history", 1, "--json").json()["rows"] if r["attempt_id"] == 2]
    assert {r["job_id"]: r["reason"] for r in rows}["c"] == "not_selected"
    work.clear()
    assert ex("resume", 1).code == 0
    assert work.ran() == ["c"]
    assert attempts(ex) == [1, 2, 3]


def test_mark_success_refusal_and_with_upstream(ex, work):
    jobs = [work.job("a", command="exit 1"), work.job("b", ["a"]), work.job("c", ["b"])]
    ex("run", work.workflow(jobs))
    r = ex("mark-success", 1, "c")
    assert r.code == 2 and "job 'a'" in r.err and "job 'b'" in r.err, r
    assert ex("status", 1, "--json").json()["jobs"]["c"]["status"] == "UPSTREAM_FAILED"
    r = ex("mark-success", 1, "c", "--with-upstream", "--json")
    assert r.code == 0 and r.json()["jobs"] == ["a", "b", "c"]
    st = ex("status", 1, "--json").json()
    assert all(st["jobs"][j]["status"] == "SUCCESS" and st["jobs"][j]["marked"] for j in "abc")
    assert attempts(ex) == [1]
    work.clear()
    r = ex("resume", 1, "--json")
    assert r.code == 0 and r.json().get("nothing_to_do") and work.ran() == []


def test_mark_success_force_skips_the_check(ex, work):
    jobs = [work.job("a", command="exit 1"), work.job("b", ["a"])]
    ex("run", work.workflow(jobs))
    assert ex("mark-success", 1, "b", "--force").code == 0
    st = ex("status", 1, "--json").json()["jobs"]
    assert st["b"]["status"] == "SUCCESS" and st["a"]["status"] == "FAILED"


def test_dry_run_writes_nothing(ex, work, home):
    jobs = [work.job("a"), work.job("b", ["a"], command="exit 1")]
    wf = work.workflow(jobs)
    r = ex("run", wf, "--dry-run", "--json")
    assert r.code == 0
    assert r.json()["will_run"] == ["a", "b"] and r.json()["valid"] is True and r.json()["errors"] == []
    assert ex("runs", "--json").json() == {"runs": []} and work.ran() == []
    ex("run", wf)
    before = ex("history", 1, "--json").out
    jobs[0] = work.job("a", command="echo new")
    r = ex("resume", 1, "-c", work.workflow(jobs), "--dry-run", "--json")
    data = r.json()
    assert r.code == 2 and data["valid"] is False and data["errors"]
    assert data["will_run"] == ["b"]
    r = ex("resume", 1, "--dry-run", "--json")
    assert r.code == 0 and r.json()["will_run"] == ["b"] and r.json()["will_skip"] == ["a"]
    assert ex("history", 1, "--json").out == before and attempts(ex) == [1]
    assert work.ran() == ["a", "b"]


def test_refused_resume_with_a_cycle_then_a_good_one_gets_attempt_2(ex, work):
    jobs = [work.job("a"), fails_in_attempt_1(work, "b", ["a"])]
    ex("run", work.workflow(jobs))
    cyclic = work.workflow([work.job("a", ["b"]), work.job("b", ["a"])], name="cyclic.yaml")
    r = ex("resume", 1, "-c", cyclic)
    assert r.code == 2 and "cycle" in r.err
    r = ex("resume", 1, "--json")
    assert r.code == 0 and r.json()["attempt_id"] == 2
    assert attempts(ex) == [1, 2]


def test_resume_from_job_rolls_back_then_resumes(ex, work):
    jobs = [work.job("a"), work.job("b", ["a"]), work.job("c", ["b"])]
    ex("run", work.workflow(jobs))
    work.clear()
    r = ex("resume", 1, "--from-job", "b", "--json")
    assert r.code == 0 and r.json()["attempt_id"] == 2
    assert work.ran() == ["b", "c"]


def test_new_jobs_run_on_resume_and_count_in_totals(ex, work):
    jobs = [work.job("a"), fails_in_attempt_1(work, "b", ["a"])]
    ex("run", work.workflow(jobs))
    work.clear()
    jobs.append(work.job("n", ["b"]))
    assert ex("resume", 1, "-c", work.workflow(jobs)).code == 0
    assert work.ran() == ["b", "n"]
    att = ex("status", 1, "--json").json()["attempts"]
    assert (att[0]["total_jobs"], att[1]["total_jobs"], att[1]["successful_jobs"]) == (2, 3, 3)


def test_rerun_changed_reruns_changed_jobs_and_descendants(ex, work):
    jobs = [work.job("a"), work.job("b", ["a"]), work.job("c", ["b"]), fails_in_attempt_1(work, "d")]
    ex("run", work.workflow(jobs))
    work.clear()
    jobs[1] = work.job("b", ["a"], command="echo v2")
    r = ex("resume", 1, "-c", work.workflow(jobs), "--rerun-changed", "--json")
    assert r.code == 0, r
    assert sorted(work.ran()) == ["b", "c", "d"]
    change = ex("status", 1, "--json").json()["attempts"][1]["changes"][0]
    assert change["allowed_by"] == "rerun_changed" and change["job"] == "b"


@pytest.mark.parametrize("ex", ["local"], indirect=True)  # Celery: see test_celery.py
def test_a_job_that_ends_after_its_coordinator_died_is_recorded_not_rerun(ex, work):
    """SIGKILL the coordinator while b runs: b finishes in its pool, resume records its real exit."""
    gate = work.flag("gate")
    jobs = [
        work.job("a"),
        work.job("b", ["a"], command=f"while [ ! -f {gate} ]; do sleep 0.05; done; exit 0"),
        work.job("c", ["b"]),
    ]
    proc = ex.popen("run", work.workflow(jobs), env={"EXECUTIONER_LEASE_TTL": "2"})
    assert poll(lambda: "b" in work.ran(), 30)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)

    def gone() -> dict:
        st = ex("status", 1, "--json").json()
        return st if st["locked_by"] is None else {}

    assert poll(gone, 30)
    st = gone()
    # Read-only: the job is still running in the pool that outlived its coordinator.
    assert st["status"] == "RUNNING" and st["coordinator_gone"] == {"still_running": ["b"]}
    gate.touch()
    assert poll(lambda: ex("status", 1, "--json").json()["status"] == "INTERRUPTED", 30)
    st = ex("status", 1, "--json").json()
    assert st["jobs"]["b"]["status"] == "SUCCESS" and st["jobs"]["b"]["exit_code"] == 0
    assert st["next_attempt"]["will_run"] == ["c"]  # what resume will do, shown before it
    r = ex("resume", 1, "--json")
    assert r.code == 0 and r.json()["attempt_id"] == 2, r
    assert work.ran() == ["a", "b", "c"]  # b ran once, in attempt 1
    rows = {(r["attempt_id"], r["job_id"]): r for r in ex("history", 1, "--json").json()["rows"]}
    assert rows[(1, "b")]["status"] == "SUCCESS" and rows[(1, "b")]["exit_code"] == 0
    assert rows[(2, "b")]["status"] == "SKIPPED" and rows[(2, "c")]["status"] == "SUCCESS"


@pytest.mark.parametrize("ex", ["local"], indirect=True)
def test_coordinator_and_pool_killed_then_resume_reaps_the_orphan(ex, work, home):
    pidfile = work.root / "job.pid"
    jobs = [
        work.job("a"),
        work.job(
            "b",
            ["a"],
            command=(f'if [ "$EXECUTIONER_ATTEMPT_ID" = 1 ]; then echo $$ > {pidfile}; sleep 300; fi'),
        ),
    ]
    proc = ex.popen("run", work.workflow(jobs), env={"EXECUTIONER_LEASE_TTL": "2"})
    assert poll(lambda: pidfile.exists() and pidfile.read_text().strip(), 30)
    orphan = int(pidfile.read_text())
    pools = _pools_of(home)
    assert len(pools) == 1
    proc.send_signal(signal.SIGKILL)
    os.kill(pools[0], signal.SIGKILL)
    proc.wait(10)
    assert poll(lambda: ex("status", 1, "--json").json()["status"] == "INTERRUPTED", 30)
    assert _alive(orphan), "status is read-only: it must not kill anything"
    st = ex("status", 1, "--json").json()
    assert st["jobs"]["b"]["status"] == "ERROR" and st["next_attempt"]["will_run"] == ["b"]
    work.clear()
    r = ex("resume", 1, "--json")
    assert r.code == 0 and r.json()["attempt_id"] == 2, r
    assert not _alive(orphan), "the job a dead coordinator and pool left behind was not reaped"
    assert work.ran() == ["b"]
    rows = [r for r in ex("history", 1, "--json").json()["rows"] if r["job_id"] == "b"]
    assert [(r["attempt_id"], r["status"], r["reason"]) for r in rows] == [
        (1, "ERROR", "interrupted"),
        (2, "SUCCESS", "not_succeeded"),
    ]


def _pools_of(home) -> list[int]:
    """Pids of local job pools working for this test's home."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"workers.pool" in cmdline and any(str(home).encode() in part for part in cmdline):
                found.append(int(entry))
    return found


def test_a_locked_run_refuses_mark_success_and_rollback(ex, work):
    gate = work.flag("gate")
    jobs = [work.job("a", command=f"while [ ! -f {gate} ]; do sleep 0.05; done")]
    proc = ex.popen("run", work.workflow(jobs))
    assert poll(lambda: ex("status", 1, "--json").code == 0, 30)
    for args in (("mark-success", 1, "a"), ("rollback", 1, "a"), ("resume", 1)):
        r = ex(*args)
        assert r.code == 3 and "locked by" in r.err, (args, r)
    gate.touch()
    assert proc.wait(60) == 0


def test_seed_flags_keep_working(ex, work):
    jobs = [work.job("a"), fails_in_attempt_1(work, "b", ["a"]), work.job("c", ["b"])]
    wf = work.workflow(jobs)
    assert ex("-c", wf).code == 1
    r = ex("--show-resume-status", "-r", 1)
    assert r.code == 0 and "a resume would be attempt 2" in r.out
    dry = ex("-c", wf, "--resume-from", 1, "--dry-run")
    assert dry.code == 0 and attempts(ex) == [1]
    work.clear()
    assert ex("-c", wf, "--resume-from", 1, "--resume-failed-only").code == 0
    assert work.ran() == ["b"]
    assert ex("--rollback-to", "b", "-r", 1).code == 0
    assert ex("--mark-success", "-r", 1, "-j", "b,c").code == 0
    st = ex("status", 1, "--json").json()["jobs"]
    assert st["b"]["marked"] and st["c"]["marked"]
    work.clear()
    assert ex("-c", wf, "--from-job", "c").code == 0  # a new run: b is marked, c runs
    assert work.ran() == ["c"]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("ex", ["local"], indirect=True)
def test_a_paused_coordinator_is_fenced_and_its_finished_job_recorded_once(ex, work):
    """SIGSTOP (a long pause) past the lease: resume takes over, records what the pool finished."""
    gate = work.flag("gate")
    jobs = [work.job("a", command=f"while [ ! -f {gate} ]; do sleep 0.02; done"), work.job("b", ["a"])]
    env = {"EXECUTIONER_LEASE_TTL": "2"}
    proc = ex.popen("run", work.workflow(jobs), env=env)
    assert poll(lambda: "a" in work.ran(), 30)
    proc.send_signal(signal.SIGSTOP)
    try:
        assert poll(lambda: ex("status", 1, "--json").json()["locked_by"] is None, 30)
        gate.touch()  # a ends while its coordinator sleeps: the pool journals it
        assert poll(lambda: ex("status", 1, "--json").json()["jobs"]["a"]["status"] == "SUCCESS", 30)
        r = ex("resume", 1, "--json", env=env)
        assert r.code == 0 and r.json()["attempt_id"] == 2, r
    finally:
        proc.send_signal(signal.SIGCONT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "stopped" in err, err  # fenced on waking, wrote nothing more
    assert work.ran() == ["a", "b"]
    st = ex("status", 1, "--json").json()
    assert [a["status"] for a in st["attempts"]] == ["INTERRUPTED", "SUCCESS"] and st["status"] == "SUCCESS"
