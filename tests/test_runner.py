import os
import threading
import time

from support import poll

from workers.retry import RetryPolicy
from workers.runner import CancelToken, RunnerHooks, run_job
from workers.spec import OUTPUT_TAIL_BYTES, JobResult, JobTask
from workers.statuses import JobStatus


def task(command, **kw) -> JobTask:
    return JobTask(run_id=7, attempt_id=2, job_id="j", command=command, **kw)


def test_string_commands_run_under_sh_and_report_exit_codes():
    r = run_job(task("echo out; echo err >&2; exit 3"))
    assert r.status is JobStatus.FAILED and r.exit_code == 3
    assert r.final.stdout_tail == "out\n" and r.final.stderr_tail == "err\n"


def test_list_commands_are_execed_without_a_shell():
    r = run_job(task(("echo", "$HOME", "a b")))
    assert r.status is JobStatus.SUCCESS and r.final.stdout_tail == "$HOME a b\n"


def test_environment_and_working_dir(tmp_path):
    r = run_job(
        task(
            'echo "$EXECUTIONER_RUN_ID $EXECUTIONER_ATTEMPT_ID $EXECUTIONER_JOB_ID $EXECUTIONER_TRY $K"; pwd',
            env={"K": "v"},
            working_dir=str(tmp_path),
        )
    )
    assert r.final.stdout_tail == f"7 2 j 1 v\n{tmp_path}\n"


def test_missing_working_dir_and_missing_program_are_errors(tmp_path):
    r = run_job(task("true", working_dir=str(tmp_path / "nope")))
    assert r.status is JobStatus.ERROR and "does not exist" in r.final.error
    r = run_job(task(("no-such-program-xyz",)))
    assert r.status is JobStatus.ERROR and "could not start" in r.final.error and r.exit_code is None


def test_timeout_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "bg.pid"
    start = time.monotonic()
    r = run_job(task(f"sleep 60 & echo $! > {pidfile}; wait", timeout=0.5))
    assert r.status is JobStatus.TIMEOUT and r.exit_code is None
    assert time.monotonic() - start < 10
    bg = int(pidfile.read_text())
    poll(lambda: not _alive(bg), 5)
    assert not _alive(bg), "the background child survived the timeout"


def test_term_ignoring_job_is_killed_after_the_grace(tmp_path, monkeypatch):
    monkeypatch.setattr("workers.runner.KILL_GRACE_SECONDS", 0.3)
    r = run_job(task("trap '' TERM; sleep 30", timeout=0.3))
    assert r.status is JobStatus.TIMEOUT


def test_stragglers_left_in_the_background_are_cleaned_up(tmp_path):
    pidfile = tmp_path / "bg.pid"
    r = run_job(task(f"sleep 60 & echo $! > {pidfile}"))
    assert r.status is JobStatus.SUCCESS
    bg = int(pidfile.read_text())
    poll(lambda: not _alive(bg), 5)
    assert not _alive(bg)


def test_output_keeps_only_the_tail_marked_with_what_was_cut():
    r = run_job(task("head -c 300000 /dev/zero | tr '\\0' x; echo END"))
    marker, out = r.final.stdout_tail.split("\n", 1)
    assert marker == f"[… {300004 - OUTPUT_TAIL_BYTES} bytes before]"
    assert len(out.encode()) == OUTPUT_TAIL_BYTES and out.endswith("xEND\n")
    assert r.final.stdout_bytes == 300004 and r.final.stderr_bytes == 0


def test_retries_record_every_try_the_successful_one_included(tmp_path):
    counter = tmp_path / "n"
    cmd = f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; [ $n -ge 3 ]"
    r = run_job(task(cmd, retry=RetryPolicy(max_retries=4)))
    assert [(t.try_number, t.status, t.exit_code) for t in r.tries] == [
        (1, JobStatus.FAILED, 1),
        (2, JobStatus.FAILED, 1),
        (3, JobStatus.SUCCESS, 0),
    ]


def test_exit_code_filter_stops_retries():
    r = run_job(task("exit 4", retry=RetryPolicy(max_retries=3, retry_on_exit_codes=frozenset({75}))))
    assert len(r.tries) == 1 and r.exit_code == 4


def test_delays_between_tries_are_recorded():
    r = run_job(task("exit 1", retry=RetryPolicy(max_retries=2, retry_delay=0.1, retry_backoff=2)))
    assert [round(t.delay_before, 2) for t in r.tries] == [0.0, 0.1, 0.2]
    assert r.tries[1].start_time - r.tries[0].end_time >= 0.09


def test_cancel_kills_running_jobs_and_stops_retry_waits():
    token = CancelToken()
    results: list[JobResult] = []
    sleeping_started, retry_waiting = threading.Event(), threading.Event()
    hooks = RunnerHooks(
        cancel=token,
        on_try_start=lambda t, n, pid, at: t.job_id == "sleeper" and sleeping_started.set(),
        on_try_end=lambda t, rec, final: t.job_id == "flaky" and retry_waiting.set(),
    )
    sleeper = JobTask(1, 1, "sleeper", "sleep 30")
    flaky = JobTask(1, 1, "flaky", "exit 1", retry=RetryPolicy(max_retries=1, retry_delay=30))
    threads = [
        threading.Thread(target=lambda t=t: results.append(run_job(t, hooks))) for t in (sleeper, flaky)
    ]
    for t in threads:
        t.start()
    assert sleeping_started.wait(10) and retry_waiting.wait(10)
    start = time.monotonic()
    token.cancel()
    for t in threads:
        t.join(10)
    assert time.monotonic() - start < 5
    by_job = {r.job_id: r for r in results}
    assert by_job["sleeper"].status is JobStatus.CANCELLED
    assert len(by_job["flaky"].tries) == 1  # the retry never started
    token.close()


def test_hooks_see_each_try_start_and_end():
    seen = []
    hooks = RunnerHooks(
        on_try_start=lambda t, n, pid, at: seen.append(("start", n, pid > 0)),
        on_try_end=lambda t, rec, final: seen.append(("end", rec.try_number, str(rec.status), final)),
    )
    run_job(task("exit 1", retry=RetryPolicy(max_retries=1)), hooks)
    assert seen == [
        ("start", 1, True),
        ("end", 1, "FAILED", False),
        ("start", 2, True),
        ("end", 2, "FAILED", True),
    ]


def test_a_signal_nobody_sent_is_a_failure_with_a_shell_style_code():
    r = run_job(task("kill -SEGV $$"))
    assert r.status is JobStatus.FAILED and r.exit_code == 128 + 11 and "SIGSEGV" in r.final.error


def test_results_round_trip_as_json():
    r = run_job(task("exit 2", retry=RetryPolicy(max_retries=1)))
    assert JobResult.from_dict(r.to_dict()).to_dict() == r.to_dict()
    t = task(("a", "b"), env={"X": "1"}, timeout=3.5, retry=RetryPolicy(max_retries=2))
    assert JobTask.from_dict(t.to_dict()) == t


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose; its parent (sh) may not have reaped it.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_long_timeout_is_supervised():
    # poll() takes a C int of milliseconds: a 30-day timeout overflowed it and left the job unsupervised.
    r = run_job(task("exit 4", timeout=30 * 24 * 3600.0))
    assert r.status is JobStatus.FAILED and r.exit_code == 4 and r.final.error is None
    cancel = CancelToken()
    threading.Timer(0.3, cancel.cancel).start()
    r = run_job(task("sleep 30", timeout=365 * 24 * 3600.0), RunnerHooks(cancel=cancel))
    assert r.status is JobStatus.CANCELLED
    cancel.close()


def test_the_local_pool_starts_threads_only_for_jobs_it_gets():
    from workers.pool import ThreadPool

    done = threading.Event()
    pool = ThreadPool(10**12, lambda task: done.set())  # --max-parallel 1e12 once meant 1e12 threads
    assert pool.threads == []
    pool.submit(task("true"))
    assert done.wait(10) and len(pool.threads) == 1
    pool.join()


def test_a_straggler_that_ignores_sigterm_is_killed_after_the_grace(tmp_path, monkeypatch):
    monkeypatch.setattr("workers.runner.KILL_GRACE_SECONDS", 0.5)
    pidfile = tmp_path / "bg.pid"
    r = run_job(task(f"(trap '' TERM; sleep 120) & echo $! > {pidfile}"))
    assert r.status is JobStatus.SUCCESS
    assert poll(lambda: not _alive(int(pidfile.read_text())), 5), "survived SIGTERM and the grace"


def test_a_daemon_that_left_the_group_is_found_by_its_environment(tmp_path):
    from workers.reaper import Reaper

    pidfile = tmp_path / "daemon.pid"
    # Double fork + setsid: the daemon is in a session of its own, out of reach of the job's group.
    daemon = f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 120' </dev/null >/dev/null 2>&1 &"
    reaper = Reaper()
    assert reaper.enabled  # prctl(PR_SET_CHILD_SUBREAPER) on Linux
    r = run_job(task(f"{daemon} sleep 0.3"), RunnerHooks(reaper=reaper))
    assert r.status is JobStatus.SUCCESS
    assert pidfile.exists() and not _alive(int(pidfile.read_text()))
    # (The job lingers a moment so the daemon has left the group before the group is signalled.)
    other = run_job(
        task(f"setsid sh -c 'exec sleep 120' </dev/null >/dev/null 2>&1 & echo $! > {pidfile}; sleep 0.3")
    )
    stranger = int(pidfile.read_text())  # no reaper: not ours to look for (another job's marks)
    assert other.status is JobStatus.SUCCESS and _alive(stranger)  # what the reaper is for
    os.kill(stranger, 9)


def test_jobs_run_side_by_side_in_threads_keep_their_exit_codes_and_their_daemons_are_found(tmp_path):
    """Leaders forked by the pool's threads are not registered with the reaper (its scans never
    list them); no scan may reap one (its exit code would be lost: ECHILD reads as 0)."""
    from workers.reaper import Reaper

    reaper = Reaper()
    results: list[JobResult] = []

    def worker(n: int) -> None:
        for i in range(15):
            pidfile = tmp_path / f"d{n}-{i}.pid"
            daemon = f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 120' </dev/null >/dev/null 2>&1 &"
            results.append(run_job(task(f"{daemon} sleep 0.02; exit 3"), RunnerHooks(reaper=reaper)))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [(r.final.status, r.final.exit_code) for r in results] == [(JobStatus.FAILED, 3)] * 30
    for pidfile in tmp_path.glob("*.pid"):
        assert poll(lambda p=pidfile: not _alive(int(p.read_text())), 5), pidfile.name
