"""The Celery executor against a real redis-server and real `executioner worker` processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import urllib.request

import pytest
from support import RedisServer, Worker, free_port, wait_until

FAST_LIVENESS = {"EXECUTIONER_HEARTBEAT_INTERVAL": "1", "EXECUTIONER_HEARTBEAT_TTL": "6"}


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test alone (it gets restarted or its workers killed)."""
    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    yield server
    server.stop()


@pytest.fixture
def own_workers(own_redis, tmp_path):
    started: list[Worker] = []

    def start(name: str, *args: str) -> Worker:
        worker = Worker(own_redis.url, tmp_path, name, *args, env=FAST_LIVENESS)
        started.append(worker)
        return worker

    yield start
    for w in started:
        w.stop()


@pytest.fixture
def own_cli(cli, own_redis):
    cli.env.update({"EXECUTIONER_BROKER_URL": own_redis.url, **FAST_LIVENESS})
    return cli


def test_a_dag_across_two_workers_routes_a_job_to_its_queue(celery_cli, work):
    jobs = [
        work.job("a"),
        work.job("b", ["a"]),
        work.job("c", ["a"]),
        work.job("gpu", ["b", "c"], queue="special"),
        work.job("z", ["gpu"]),
    ]
    r = celery_cli("run", work.workflow(jobs), "--json")
    assert r.code == 0, r
    assert sorted(work.ran()) == ["a", "b", "c", "gpu", "z"]
    rows = {row["job_id"]: row for row in celery_cli("history", 1, "--json").json()["rows"]}
    assert rows["gpu"]["worker"].startswith("w2@")  # only w2 consumes `special`
    assert rows["gpu"]["queue"] == "special"
    att = celery_cli("status", 1, "--json").json()["attempts"][0]
    assert att["executor"] == "celery"


def test_retries_with_exit_code_filters_are_all_in_history(celery_cli, work):
    counter = work.root / "n"
    cmd = (
        f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; [ $n -ge 3 ] || exit 75"
    )
    jobs = [
        work.job("flaky", command=cmd, max_retries=4, retry_on_exit_codes=[75], retry_delay=0.1),
        work.job("strict", command="exit 9", max_retries=4, retry_on_exit_codes=[75]),
    ]
    r = celery_cli("run", work.workflow(jobs), "--json")
    assert r.code == 1
    assert r.json()["jobs"]["flaky"] == {"status": "SUCCESS", "exit_code": 0, "retry_count": 2}
    rows = {row["job_id"]: row for row in celery_cli("history", 1, "--json").json()["rows"]}
    assert [(t["status"], t["exit_code"]) for t in rows["flaky"]["retry_history"]] == [
        ("FAILED", 75),
        ("FAILED", 75),
        ("SUCCESS", 0),
    ]
    assert [(t["status"], t["exit_code"]) for t in rows["strict"]["retry_history"]] == [("FAILED", 9)]
    assert all(t["worker"].startswith(("w1@", "w2@")) for t in rows["flaky"]["retry_history"])


def test_a_worker_killed_mid_job_is_detected_and_the_job_retried(own_cli, own_workers, work):
    pidfile = work.root / "victim.pid"
    victim = own_workers("victim", "--concurrency", "1", "-Q", "fragile")
    jobs = [
        work.job(
            "victim",
            queue="fragile",
            max_retries=1,
            command=(f'if [ "$EXECUTIONER_TRY" = 1 ]; then echo $$ > {pidfile}; sleep 300; fi'),
        )
    ]
    proc = own_cli.popen("run", work.workflow(jobs), "--json")
    try:
        wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 60, "the job to start")
        victim.kill()
        own_workers("rescuer", "--concurrency", "1", "-Q", "fragile")
        out, err = proc.communicate(timeout=120)
    finally:
        _kill(pidfile)
    assert proc.returncode == 0, err
    assert json.loads(out)["jobs"]["victim"] == {"status": "SUCCESS", "exit_code": 0, "retry_count": 1}
    (row,) = own_cli("history", 1, "--json").json()["rows"]
    tries = row["retry_history"]
    assert [(t["try"], t["status"]) for t in tries] == [(1, "ERROR"), (2, "SUCCESS")]
    assert "stopped heart-beating" in tries[0]["error"] and tries[0]["worker"].startswith("victim@")
    assert tries[1]["worker"].startswith("rescuer@")


def test_a_lost_worker_without_retries_left_ends_the_job_error_not_hung(own_cli, own_workers, work):
    pidfile = work.root / "victim.pid"
    victim = own_workers("victim", "--concurrency", "1")
    jobs = [work.job("victim", command=f"echo $$ > {pidfile}; sleep 300"), work.job("after", ["victim"])]
    proc = own_cli.popen("run", work.workflow(jobs), "--json")
    try:
        wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 60, "the job to start")
        victim.kill()
        out, _ = proc.communicate(timeout=120)
    finally:
        _kill(pidfile)
    assert proc.returncode == 1
    jobs_out = json.loads(out)["jobs"]
    assert jobs_out["victim"]["status"] == "ERROR" and jobs_out["after"]["status"] == "UPSTREAM_FAILED"


def test_redis_restarted_mid_run_with_aof_the_run_finishes(own_redis, own_cli, own_workers, work):
    own_workers("w1", "--concurrency", "2")
    gate = work.flag("gate")
    jobs = [
        work.job("a"),
        work.job("slow", ["a"], command=f"while [ ! -f {gate} ]; do sleep 0.05; done"),
        work.job("b", ["slow"]),
        work.job("c", ["slow"]),
    ]
    proc = own_cli.popen("run", work.workflow(jobs), "--json")
    wait_until(lambda: "slow" in work.ran(), 60, "the slow job to start")
    own_redis.restart()
    gate.touch()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert json.loads(out)["status"] == "SUCCESS"
    assert sorted(work.ran()) == ["a", "b", "c", "slow"]


def test_a_dispatch_waits_out_a_short_outage(own_redis, tmp_path):
    # Submitted jobs wait for the coordinator's flush, then go in one pipeline (kombu's
    # Producer.batch); the executor's patience rides out the outage: one copy of each is queued.
    from orchestrator.executors.celery import CeleryExecutor
    from orchestrator.settings import Settings
    from workers import keys
    from workers.spec import JobTask

    executor = CeleryExecutor(Settings.from_env({}, home=tmp_path, broker_url=own_redis.url), "s")
    client = own_redis.client()
    for job in ("a", "b", "c"):
        executor.submit(JobTask(run_id=7, attempt_id=1, job_id=job, command="true", epoch=1))
    assert client.llen("default") == 0  # nothing sent before the flush
    client.close()
    own_redis.stop()
    back = threading.Timer(1.0, own_redis.start)  # the outage itself, not a synchronization
    back.start()
    try:
        executor.flush()
    finally:
        back.join()
        executor.close()
    client = own_redis.client()
    ids = sorted(json.loads(m)["headers"]["id"] for m in client.lrange("default", 0, -1))
    assert ids == sorted(keys.task_id(7, 1, job, 1) for job in ("a", "b", "c"))
    client.close()


def test_redis_down_while_a_job_ends_its_result_is_delivered_after_the_outage(
    own_redis, own_cli, own_workers, work
):
    # The outage spans the job's end: the worker must hold the result until Redis is back, and the
    # coordinator must ride the outage out (reader reconnects, deferred acks) instead of failing.
    own_workers("w1", "--concurrency", "2")
    gate, finished = work.flag("gate"), work.flag("finished")
    jobs = [
        work.job("slow", command=f"while [ ! -f {gate} ]; do sleep 0.05; done; touch {finished}"),
        work.job("after", ["slow"]),
    ]
    proc = own_cli.popen("run", work.workflow(jobs), "--json")
    wait_until(lambda: "slow" in work.ran(), 60, "the slow job to start")
    own_redis.stop()
    gate.touch()
    wait_until(finished.exists, 30, "the slow job to end while Redis is down")
    own_redis.start()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["status"] == "SUCCESS"
    assert work.ran() == ["slow", "after"]
    (slow,) = own_cli("history", result["run_id"], "--job", "slow", "--json").json()["rows"]
    assert slow["status"] == "SUCCESS"
    assert [t["status"] for t in slow["retry_history"]] == ["SUCCESS"]


def test_coordinator_killed_mid_run_then_resumed_nothing_twice_nothing_lost(own_cli, own_workers, work):
    own_workers("w1", "--concurrency", "2")
    gate = work.flag("gate")
    jobs = [
        work.job("a"),
        work.job("b", ["a"], command=f"while [ ! -f {gate} ]; do sleep 0.05; done"),
        work.job("c", ["b"]),
        work.job("d", ["a"]),
    ]
    env = {"EXECUTIONER_LEASE_TTL": "2"}
    proc = own_cli.popen("run", work.workflow(jobs), env=env)
    wait_until(lambda: "b" in work.ran() and "d" in work.ran(), 60, "b and d to start")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    gate.touch()  # b finishes on its worker while no coordinator is there to hear it
    wait_until(lambda: own_cli("status", 1, "--json").json()["locked_by"] is None, 30, "the lock to expire")
    r = own_cli("resume", 1, "--json", env=env)
    assert r.code == 0, r
    assert r.json()["attempt_id"] == 2
    assert sorted(work.ran()) == ["a", "b", "c", "d"]  # b and d not run twice, c run once
    rows = own_cli("history", 1, "--json").json()["rows"]
    first = {row["job_id"]: row["status"] for row in rows if row["attempt_id"] == 1}
    assert first == {"a": "SUCCESS", "b": "SUCCESS", "c": "PENDING", "d": "SUCCESS"}
    second = {row["job_id"]: row["status"] for row in rows if row["attempt_id"] == 2}
    assert second == {"a": "SKIPPED", "b": "SKIPPED", "c": "SUCCESS", "d": "SKIPPED"}
    statuses = [a["status"] for a in own_cli("status", 1, "--json").json()["attempts"]]
    assert statuses == ["INTERRUPTED", "SUCCESS"]


def test_resume_waits_for_a_job_still_running_from_the_dead_coordinator(own_cli, own_workers, work):
    own_workers("w1", "--concurrency", "2")
    gate = work.flag("gate")
    jobs = [work.job("a", command=f"while [ ! -f {gate} ]; do sleep 0.05; done"), work.job("b", ["a"])]
    env = {"EXECUTIONER_LEASE_TTL": "2"}
    proc = own_cli.popen("run", work.workflow(jobs), env=env)
    wait_until(lambda: "a" in work.ran(), 60, "a to start")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    wait_until(lambda: own_cli("status", 1, "--json").json()["locked_by"] is None, 30, "the lock to expire")
    assert own_cli("status", 1, "--json").json()["status"] == "RUNNING"  # a is still alive on its worker
    resume = own_cli.popen("resume", 1, "--json", env=env)
    notice = resume.stderr.readline()  # blocks until resume says it waits (pytest-timeout guards it)
    assert "still has 1 job(s) running on workers (a)" in notice
    gate.touch()
    out, err = resume.communicate(timeout=60)
    assert resume.returncode == 0, err
    assert json.loads(out)["attempt_id"] == 2
    assert work.ran() == ["a", "b"]  # a ran once, in attempt 1, and was recorded there


def test_cancel_stops_jobs_on_workers(celery_cli, work):
    pidfile = work.root / "job.pid"
    jobs = [work.job("long", command=f"echo $$ > {pidfile}; sleep 300"), work.job("after", ["long"])]
    proc = celery_cli.popen("run", work.workflow(jobs), "--json")
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 60, "the job to start")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert json.loads(out)["jobs"]["long"]["status"] == "CANCELLED"
    job_pid = int(pidfile.read_text())
    wait_until(lambda: not os.path.exists(f"/proc/{job_pid}") or _zombie(job_pid), 15, "the job to be killed")


def test_flower_lists_the_runs_tasks(celery_cli, shared_redis, work):
    port = free_port()
    flower = celery_cli.popen("flower", "--port", port, "--unauthenticated-api")
    try:
        wait_until(lambda: _http(f"http://127.0.0.1:{port}/api/tasks") is not None, 60, "flower to serve")
        jobs = [
            work.job("extract"),
            work.job("load", ["extract"]),
            work.job("check", command="exit 3", max_retries=1),
        ]
        r = celery_cli("run", work.workflow(jobs))
        assert r.code == 1, r

        def listed():
            tasks = _http(f"http://127.0.0.1:{port}/api/tasks")
            wanted = {"run1.a1.extract.t1", "run1.a1.load.t1", "run1.a1.check.t1"}
            return tasks and wanted <= set(tasks) and tasks["run1.a1.check.t1"]["state"] == "FAILURE"

        wait_until(listed, 30, "flower to list the run's tasks")
        tasks = _http(f"http://127.0.0.1:{port}/api/tasks")
        assert tasks["run1.a1.extract.t1"]["name"] == "test_app.extract"  # the workflow's and job's names
        assert tasks["run1.a1.load.t1"]["state"] == "SUCCESS"
        failed = tasks["run1.a1.check.t1"]  # a failed job is a failed task, with its status and exit code
        assert "FAILED exit 3 after 2 tries" in failed["exception"]
        assert failed["retried"] is not None  # the in-worker retry was an event Flower saw
    finally:
        flower.terminate()
        flower.wait(20)


def test_flowers_tasks_page_in_a_browser_shows_failed_jobs_failed(celery_cli, work, tmp_path):
    from support.browser import chromium_page

    port = free_port()
    flower = celery_cli.popen("flower", "--port", port, "--unauthenticated-api")
    try:
        wait_until(lambda: _http(f"http://127.0.0.1:{port}/api/tasks") is not None, 60, "flower to serve")
        r = celery_cli(
            "run", work.workflow([work.job("ok"), work.job("broken", command="exit 3", max_retries=1)])
        )
        assert r.code == 1, r
        wait_until(
            lambda: (
                (_http(f"http://127.0.0.1:{port}/api/tasks") or {}).get("run1.a1.broken.t1", {}).get("state")
                == "FAILURE"
            ),
            30,
            "flower to see the failure",
        )
        with chromium_page() as page:
            page.goto(f"http://127.0.0.1:{port}/tasks")
            row = page.locator("tr", has_text="run1.a1.broken.t1")
            row.wait_for()
            text = row.inner_text()
            assert "test_app.broken" in text and "FAILURE" in text, text
            ok = page.locator("tr", has_text="run1.a1.ok.t1").inner_text()
            assert "test_app.ok" in ok and "SUCCESS" in ok, ok
            page.screenshot(path=str(tmp_path / "flower-tasks.png"))
    finally:
        flower.terminate()
        flower.wait(20)


def test_flower_refuses_to_start_without_auth(celery_cli):
    r = celery_cli("flower", "--port", free_port())
    assert r.code == 2 and "--basic-auth" in r.err
    r = celery_cli("flower", "--address", "0.0.0.0", "--unauthenticated-api")
    assert r.code == 2 and "loopback" in r.err


def _http(url: str):
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None


def _kill(pidfile) -> None:
    with contextlib.suppress(OSError, ValueError):
        os.killpg(int(pidfile.read_text()), signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] == "Z"
    except FileNotFoundError:
        return True
