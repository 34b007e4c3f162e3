"""End to end through the installed ``executioner`` command: running workflows (the foundation)."""

from __future__ import annotations

import json
import re
import signal
import time

import pytest
from support import poll


def test_a_failing_job_fails_its_descendants_while_independent_branches_finish(cli, work):
    wf = work.workflow(
        [
            work.job("extract"),
            work.job("transform", ["extract"], command="exit 3"),
            work.job("load", ["transform"]),
            work.job("side", ["extract"]),
            work.job("lone"),
        ]
    )
    r = cli("run", wf, "--json")
    assert r.code == 1, r
    out = r.json()
    assert out["run_id"] == 1 and out["attempt_id"] == 1 and out["status"] == "FAILED"
    jobs = out["jobs"]
    assert jobs["transform"] == {"status": "FAILED", "exit_code": 3, "retry_count": 0}
    assert jobs["load"]["status"] == "UPSTREAM_FAILED"
    assert jobs["side"]["status"] == jobs["lone"]["status"] == "SUCCESS"
    assert sorted(work.ran()) == ["extract", "lone", "side", "transform"]


def test_retries_until_success_keep_three_try_records(cli, work):
    counter = work.root / "count"
    cmd = f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; [ $n -ge 3 ]"
    wf = work.workflow([work.job("flaky", command=cmd, max_retries=3)])
    r = cli("run", wf, "--json")
    assert r.code == 0, r
    assert r.json()["jobs"]["flaky"] == {"status": "SUCCESS", "exit_code": 0, "retry_count": 2}
    h = cli("history", 1, "--json").json()
    (row,) = h["rows"]
    assert [(t["try"], t["status"], t["exit_code"]) for t in row["retry_history"]] == [
        (1, "FAILED", 1),
        (2, "FAILED", 1),
        (3, "SUCCESS", 0),
    ]
    assert row["retry_count"] == 2 and row["worker"]
    assert all(t["start_time"] and t["end_time"] for t in row["retry_history"])


def test_an_exit_code_outside_the_filter_is_not_retried(cli, work):
    wf = work.workflow([work.job("j", command="exit 4", max_retries=3, retry_on_exit_codes=[75])])
    r = cli("run", wf, "--json")
    assert r.code == 1 and r.json()["jobs"]["j"] == {"status": "FAILED", "exit_code": 4, "retry_count": 0}
    assert work.ran() == ["j"]


def test_a_timeout_kills_the_background_child_too(cli, work):
    pidfile = work.root / "child.pid"
    wf = work.workflow([{"id": "slow", "command": f"sleep 300 & echo $! > {pidfile}; wait", "timeout": 1}])
    started = time.monotonic()
    r = cli("run", wf, "--json")
    assert r.code == 1 and r.json()["jobs"]["slow"]["status"] == "TIMEOUT", r
    assert time.monotonic() - started < 30
    child = int(pidfile.read_text())
    assert _gone_within(child, 5), "the background child of a timed-out job is still running"


def test_env_vars_reach_the_job_and_logs_show_its_output(cli, work):
    wf = work.workflow(
        [
            {
                "id": "show",
                "command": 'echo "$GREETING run=$EXECUTIONER_RUN_ID attempt=$EXECUTIONER_ATTEMPT_ID '
                'job=$EXECUTIONER_JOB_ID try=$EXECUTIONER_TRY"; echo oops >&2',
                "env": {"GREETING": "hello"},
            }
        ]
    )
    assert cli("run", wf).code == 0
    logs = cli("logs", 1, "show")
    assert logs.code == 0
    assert "hello run=1 attempt=1 job=show try=1" in logs.out and "oops" in logs.out


def test_yaml_and_json_workflows_run_the_same(cli, work):
    jobs = [work.job("a"), work.job("b", ["a"])]
    assert cli("run", work.workflow(jobs, "w.yaml"), "--json").json()["status"] == "SUCCESS"
    assert cli("run", work.workflow(jobs, "w.json"), "--json").json()["status"] == "SUCCESS"
    assert work.ran() == ["a", "b", "a", "b"]


def test_list_commands_and_working_dir(cli, work):
    sub = work.root / "sub"
    sub.mkdir()
    wf = work.workflow([{"id": "pwd", "command": ["sh", "-c", "pwd > out.txt"], "working_dir": str(sub)}])
    assert cli("run", wf).code == 0
    assert (sub / "out.txt").read_text().strip() == str(sub)


def test_could_not_start_is_an_error_with_a_reason(cli, work):
    wf = work.workflow([{"id": "x", "command": ["definitely-not-a-program"]}])
    r = cli("run", wf, "--json")
    assert r.code == 1 and r.json()["jobs"]["x"]["status"] == "ERROR"
    h = cli("history", 1, "--json").json()
    assert "could not start" in h["rows"][0]["retry_history"][0]["error"]


def test_plain_output_has_one_line_per_job_event(cli, work):
    wf = work.workflow([work.job("a"), work.job("b", ["a"], command="exit 2")])
    r = cli("run", wf)
    assert r.code == 1
    lines = r.out.splitlines()
    assert any(line.endswith("a RUNNING") for line in lines)
    assert any("a SUCCESS" in line for line in lines)
    assert any("b FAILED" in line and "exit 2" in line for line in lines)
    assert "resume with: executioner resume 1" in r.out


def test_status_runs_and_history_json_shapes(cli, work):
    wf = work.workflow([work.job("a"), work.job("b", ["a"], command="exit 1")])
    cli("run", wf)
    cli("run", wf)
    runs = cli("runs", "--json").json()["runs"]
    assert [r["run_id"] for r in runs] == [2, 1]
    assert set(runs[0]) >= {"run_id", "application_name", "status", "attempts", "start_time"}
    assert runs[0]["status"] == "FAILED" and runs[0]["attempts"] == 1
    st = cli("status", 1, "--json").json()
    assert set(st) >= {"run_id", "application_name", "status", "attempts", "jobs", "next_attempt"}
    (att,) = st["attempts"]
    assert set(att) >= {
        "attempt_id",
        "status",
        "start_time",
        "end_time",
        "total_jobs",
        "successful_jobs",
        "failed_jobs",
        "skipped_jobs",
        "config_hash",
        "triggered_by",
        "trigger_reason",
    }
    assert (att["total_jobs"], att["successful_jobs"], att["failed_jobs"], att["skipped_jobs"]) == (
        2,
        1,
        1,
        0,
    )
    assert st["jobs"]["b"] == {
        "status": "FAILED",
        "attempt_id": 1,
        "exit_code": 1,
        "retry_count": 0,
        "marked": False,
    }
    assert st["next_attempt"] == {
        "attempt_id": 2,
        "will_run": ["b"],
        "will_skip": ["a"],
        "reasons": {"a": "already_succeeded", "b": "not_succeeded"},
    }
    h = cli("history", 1, "--json").json()
    assert h["run_id"] == 1
    for row in h["rows"]:
        assert set(row) >= {
            "attempt_id",
            "job_id",
            "status",
            "reason",
            "exit_code",
            "start_time",
            "end_time",
            "duration",
            "retry_count",
            "retry_history",
            "worker",
        }
        assert set(row["retry_history"][0]) >= {"try", "status", "exit_code", "start_time", "end_time"}
    only_b = cli("history", 1, "--job", "b", "--json").json()["rows"]
    assert [r["job_id"] for r in only_b] == ["b"]


def test_max_parallel_caps_jobs_in_flight(cli, work):
    # Each job records how many are running when it starts; with --max-parallel 2 never more than 2.
    running = work.root / "running"
    running.mkdir()
    cmd = (
        f"touch {running}/$EXECUTIONER_JOB_ID; ls {running} | wc -l >> {work.root}/seen; sleep 0.2; "
        f"rm {running}/$EXECUTIONER_JOB_ID"
    )
    wf = work.workflow([{"id": f"j{i}", "command": cmd} for i in range(8)])
    assert cli("run", wf, "--max-parallel", "2").code == 0
    seen = [int(x) for x in (work.root / "seen").read_text().split()]
    assert len(seen) == 8 and max(seen) <= 2 and 2 in seen


def test_the_workflow_max_parallel_caps_the_flag(cli, work):
    running = work.root / "running"
    running.mkdir()
    cmd = (
        f"touch {running}/$EXECUTIONER_JOB_ID; ls {running} | wc -l >> {work.root}/seen; sleep 0.2; "
        f"rm {running}/$EXECUTIONER_JOB_ID"
    )
    wf = work.workflow([{"id": f"j{i}", "command": cmd} for i in range(6)], max_parallel=1)
    assert cli("run", wf, "--max-parallel", "4").code == 0
    assert max(int(x) for x in (work.root / "seen").read_text().split()) == 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_cancels_running_jobs_and_exits_130(cli, work, sig):
    pidfile = work.root / "job.pid"
    wf = work.workflow(
        [
            {"id": "long", "command": f"echo $$ > {pidfile}; sleep 300"},
            {"id": "after", "command": "true", "dependencies": ["long"]},
        ]
    )
    proc = cli.popen("run", wf, "--json")
    assert poll(lambda: pidfile.exists() and pidfile.read_text().strip(), 30)
    job_pid = int(pidfile.read_text())
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert json.loads(out)["jobs"]["long"]["status"] == "CANCELLED"
    assert _gone_within(job_pid, 5)
    st = cli("status", 1, "--json").json()
    assert st["status"] == "CANCELLED" and st["jobs"]["after"]["status"] == "CANCELLED"


def test_validate_and_graph(cli, work):
    wf = work.workflow([work.job("a"), work.job("b.x", ["a"])], application_name="g")
    ok = cli("validate", wf)
    assert ok.code == 0 and "valid" in ok.out
    dot = cli("graph", wf).out
    assert '"a" -> "b.x";' in dot and dot.startswith('digraph "g"')
    mermaid = cli("graph", wf, "--format", "mermaid").out
    assert mermaid.startswith("graph LR") and 'j1["b.x"]' in mermaid and "j0 --> j1" in mermaid


def test_the_example_workflow_runs(cli, work):
    from pathlib import Path

    example = Path(__file__).parent.parent / "examples" / "etl.yaml"
    r = cli("run", example, "--json")
    assert r.code == 0, r
    out = r.json()
    assert out["status"] == "SUCCESS" and out["jobs"]["fetch_rates"]["retry_count"] == 1
    tries = cli("history", out["run_id"], "--job", "fetch_rates", "--json").json()["rows"][0]["retry_history"]
    assert [(t["status"], t["exit_code"]) for t in tries] == [("FAILED", 75), ("SUCCESS", 0)]


def _gone_within(pid: int, seconds: float) -> bool:
    def gone() -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split()[2] == "Z"
        except FileNotFoundError:
            return True

    return poll(gone, seconds)


def test_twenty_concurrent_runs_get_distinct_ids_and_no_lock_errors(cli, work):
    wf = work.workflow([work.job("a"), work.job("b", ["a"]), work.job("c", ["a"]), work.job("d", ["b", "c"])])
    procs = [cli.popen("run", wf, "--json") for _ in range(20)]
    results = [(p.wait(120), *p.communicate()) for p in procs]
    assert [code for code, _, _ in results] == [0] * 20, [err for _, _, err in results if err]
    ids = sorted(json.loads(out)["run_id"] for _, out, _ in results)
    assert ids == list(range(1, 21))
    assert all("locked" not in err.lower() and "error" not in err.lower() for _, _, err in results)
    assert len(work.ran()) == 80


def test_on_a_terminal_run_shows_live_progress(cli, work):
    import os
    import pty
    import subprocess

    from conftest import EXECUTIONER

    wf = work.workflow([work.job("a"), work.job("b", ["a"], command="exit 5"), work.job("c", ["b"])])
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [EXECUTIONER, "run", str(wf)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, **cli.env, "COLUMNS": "120"},
        cwd=cli.cwd,
    )
    os.close(slave)
    output = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    assert proc.wait(60) == 1
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode(errors="replace"))  # colours
    assert "run 1 attempt 1" in text and "3 of 3 jobs to run" in text
    assert "FAILED" in text and "b" in text and "UPSTREAM_FAILED" in text
    assert "resume with: executioner resume 1" in text
