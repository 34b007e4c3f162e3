"""Hosts cut off from the network, as in a real outage: Linux network namespaces (tests/support/netns.py).

Redis and PostgreSQL live on a "server" host; workers and coordinators on hosts of their own. Cutting a
host's link drops its packets without a reset, as a pulled cable or a vanished host does: connections
hang, nothing fails fast. Needs root (CI runs as root); skipped without it, except under CI.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import EXECUTIONER, Result, Workdir
from support import PostgresServer, RedisServer, Worker, wait_until
from support.netns import Network, unavailable

from workers import keys

# The broker is off loopback here, so tasks must be signed (a worker refuses to start otherwise).
LIVENESS = {
    "EXECUTIONER_HEARTBEAT_INTERVAL": "1",
    "EXECUTIONER_HEARTBEAT_TTL": "6",
    "EXECUTIONER_SECRET_KEY": "netns-test-secret-0123456789",
}
LOCK_TTL = "6"


class Site:
    """The server host (Redis, PostgreSQL) and the hosts tests add."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.workers: list[Worker] = []
        self.procs: list[subprocess.Popen] = []
        self.redis: RedisServer | None = None
        self.postgres: PostgresServer | None = None
        self.net = Network()
        try:
            self.server = self.net.host("srv")
            self.redis = RedisServer(tmp / "redis", bind=self.server.address, prefix=self.server.prefix())
            self.redis.start()
            self.postgres = PostgresServer(listen=self.server.address, prefix=self.server.prefix())
            self.postgres.start()
        except BaseException:
            self.close()  # whatever started: nothing may outlive a failed set-up
            raise

    def env(self, database: str, home: Path) -> dict[str, str]:
        return {
            **os.environ,
            **LIVENESS,
            "EXECUTIONER_BROKER_URL": self.redis.url,
            "EXECUTIONER_DATABASE_URL": database,
            "EXECUTIONER_LEASE_TTL": LOCK_TTL,
            "EXECUTIONER_HOME": str(home),
        }

    def worker(self, host, name: str, *args: str) -> Worker:
        env = {**LIVENESS, "EXECUTIONER_HOME": str(self.tmp / f"home-{name}")}
        worker = Worker(self.redis.url, self.tmp, name, *args, env=env, prefix=host.prefix())
        self.workers.append(worker)
        return worker

    def coordinator(self, host, env: dict, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [*host.prefix(), EXECUTIONER, *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        return proc

    def cli(self, env: dict, *args) -> Result:
        """A read-only command on the server host (where both services are local)."""
        proc = subprocess.run(
            [*self.server.prefix(), EXECUTIONER, *map(str, args)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        for worker in self.workers:
            worker.stop()
        with contextlib.suppress(Exception):  # (half started): the namespaces' close kills the rest
            if self.redis is not None:
                self.redis.stop()
        with contextlib.suppress(Exception):
            if self.postgres is not None:
                self.postgres.stop()
        self.net.close()


@pytest.fixture
def site(tmp_path):
    why = unavailable()
    if why:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{why}, and CI must not pass by skipping", pytrace=False)
        pytest.skip(why)
    site = Site(tmp_path)
    try:
        yield site
    finally:
        for host in site.net.hosts:  # a test that failed mid-cut must not leave its hosts cut
            site.net.heal(host)
        site.close()


def _until(proc: subprocess.Popen, predicate, seconds: float, what: str) -> None:
    """Wait for ``predicate`` while the coordinator ``proc`` runs; its own words if it stopped."""
    wait_until(lambda: predicate() or proc.poll() is not None, seconds, what)
    if not predicate():
        out, err = proc.communicate()
        pytest.fail(f"the coordinator exited {proc.returncode} before {what}: {err[-3000:]}{out[-2000:]}")


def _beats(path: Path) -> list[float]:
    return [float(x) for x in path.read_text().split()] if path.exists() else []


def _all_read(site: Site) -> bool:
    """The coordinator has read every event on the runs' streams (its group was handed the last)."""
    client = site.redis.client()
    try:
        for key in client.scan_iter("executioner:*:events:*"):
            last = client.xinfo_stream(key)["last-generated-id"]
            if any(g["last-delivered-id"] != last for g in client.xinfo_groups(key)):
                return False
        return True
    finally:
        client.close()


def test_a_worker_cut_off_mid_job_stops_it_its_jobs_run_elsewhere_and_its_late_result_is_discarded(
    site, tmp_path
):
    work = Workdir(tmp_path)
    w1, w2, coord = site.net.host("w1"), site.net.host("w2"), site.net.host("c1")
    gate = work.flag("gate")
    # Each copy of `long` writes a timestamp every 0.1 s to a file of its own (shared disk): two copies
    # running at once would show as overlapping spans.
    long_cmd = f"for i in $(seq 60); do date +%s.%N >> {tmp_path}/long.$EXECUTIONER_TRY; sleep 0.1; done"
    short_cmd = (
        f"date +%s.%N > {tmp_path}/short.$EXECUTIONER_TRY.start; sleep 2.5; "
        f"date +%s.%N > {tmp_path}/short.$EXECUTIONER_TRY.end"
    )
    jobs = [
        work.job("long", command=long_cmd, max_retries=1),
        work.job("short", command=short_cmd, max_retries=1),
        work.job("hold", command=f"while [ ! -f {gate} ]; do sleep 0.05; done", max_retries=1),
    ]
    env = site.env(site.postgres.new_database(), tmp_path / "home")
    site.worker(w1, "w1", "--concurrency", "3")
    run = site.coordinator(coord, env, "run", work.workflow(jobs), "--json")
    _until(run, lambda: sorted(work.ran()) == ["hold", "long", "short"], 60, "all three jobs started on w1")
    site.worker(w2, "w2", "--concurrency", "3")  # only now: everything before ran on w1

    site.net.cut(w1)
    cut = time.time()
    # short ends during the cut (its result is stuck on w1; 2.5 s is before any fence, which comes
    # 2.8 s after the last renewal, so at least 2.8 s after its claim); long is still running:
    # w1 must stop it before its lease can expire, since the coordinator then starts another copy.
    _until(run, lambda: (tmp_path / "short.1.end").exists(), 30, "short ended on the cut-off worker")
    _until(run, lambda: len(_beats(tmp_path / "long.2")) >= 60, 90, "long's second copy finished")
    _until(run, lambda: (tmp_path / "short.2.end").exists(), 30, "short's second copy finished")
    first, second = _beats(tmp_path / "long.1"), _beats(tmp_path / "long.2")
    assert first[-1] < second[0], "two copies of long ran at once"
    assert first[-1] - cut < 6.0, f"long ran {first[-1] - cut:.1f}s after the cut: past its lease"
    assert len(first) < 60  # stopped mid-job, not finished
    assert float((tmp_path / "short.1.end").read_text()) < float((tmp_path / "short.2.start").read_text())

    site.net.heal(w1)  # w1 delivers short's late result; nothing of long's (it gave up on it)
    w1_log = tmp_path / "worker-w1.log"
    wait_until(lambda: "1.1.short', 'status': 'SUCCESS'" in w1_log.read_text(), 90, "short's late result")
    _until(run, lambda: _all_read(site), 30, "the coordinator to read the late result")
    client = site.redis.client()
    (lease,) = client.scan_iter("executioner:*:lease:*:1:short:1")  # try 1's: declared lost, stays so
    assert client.get(lease) == keys.LOST.encode()
    client.close()
    gate.touch()
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    run_id = json.loads(out)["run_id"]

    rows = {r["job_id"]: r for r in site.cli(env, "history", run_id, "--json").json()["rows"]}
    for job in ("long", "short", "hold"):
        tries = [(t["status"], t["try"]) for t in rows[job]["retry_history"]]
        assert tries == [("ERROR", 1), ("SUCCESS", 2)], (job, tries)  # the late SUCCESS of try 1: discarded
        assert rows[job]["status"] == "SUCCESS"
    assert "lease" in rows["long"]["retry_history"][0]["error"]
    log = w1_log.read_text()
    assert "1.1.long: stopping: fenced: could not renew its lease" in log
    assert "'job': '1.1.long', 'gave_up'" in log


def test_a_coordinator_cut_off_longer_than_its_lock_is_replaced_and_on_healing_writes_nothing(site, tmp_path):
    work = Workdir(tmp_path)
    w1, c1, c2 = site.net.host("w1"), site.net.host("c1"), site.net.host("c2")
    gate = work.flag("gate")
    jobs = [work.job("a", command=f"while [ ! -f {gate} ]; do sleep 0.05; done"), work.job("b", ["a"])]
    env = site.env(site.postgres.new_database(), tmp_path / "home")
    site.worker(w1, "w1", "--concurrency", "2")
    first = site.coordinator(c1, env, "run", work.workflow(jobs), "--json")
    _until(first, lambda: work.ran() == ["a"], 60, "a started")

    site.net.cut(c1)
    # No lock holder once its TTL passed without renewal (status reads it on the server host).
    wait_until(
        lambda: site.cli(env, "status", 1, "--json").json()["locked_by"] is None, 60, "the lock to expire"
    )
    second = site.coordinator(c2, env, "resume", "1", "--json")
    notice = second.stderr.readline()  # it waits for a, still running on w1 for the first coordinator
    assert "still has 1 job(s) running on workers (a)" in notice, notice
    gate.touch()
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert json.loads(out)["attempt_id"] == 2
    before = site.cli(env, "history", 1, "--json").json()
    audit_before = site.cli(env, "audit", 1, "--json").json()

    site.net.heal(c1)
    _out, err = first.communicate(timeout=180)
    assert first.returncode == 1 and "stopped" in err, err  # fenced on its first step back
    assert site.cli(env, "history", 1, "--json").json() == before
    assert site.cli(env, "audit", 1, "--json").json() == audit_before
    assert work.ran() == ["a", "b"]  # a once (attempt 1, recorded by the resume), b once
    status = site.cli(env, "status", 1, "--json").json()
    assert status["status"] == "SUCCESS"
    assert [a["status"] for a in status["attempts"]] == ["INTERRUPTED", "SUCCESS"]
