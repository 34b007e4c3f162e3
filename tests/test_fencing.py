"""A worker that cannot renew a job's lease stops the job itself before the lease can expire.

The coordinator may start another copy the moment the lease expires (it declares the try lost), so
the cut-off copy must be dead by then: two copies of a job never run at once.
"""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.exceptions import ConnectionError as RedisConnectionError
from support import RedisServer, poll

from workers import keys
from workers.channel import Heartbeats
from workers.lease_timing import KILL_GRACE_SECONDS, LeaseTiming
from workers.settings import WorkerSettings
from workers.spec import JobTask
from workers.statuses import JobStatus

# -- when (pure) -----------------------------------------------------------------------------------


def test_the_defaults_ride_out_13_seconds_without_redis_and_stop_the_job_well_before_expiry():
    timing = LeaseTiming(ttl=20, interval=5)
    assert timing.fence_after == pytest.approx(13.0)
    assert timing.grace == KILL_GRACE_SECONDS
    assert not timing.fenced(100.0, 112.9) and timing.fenced(100.0, 113.0)
    assert timing.problem() is None


@given(
    interval=st.floats(min_value=0.05, max_value=600, allow_nan=False),
    ttl=st.floats(min_value=0.05, max_value=7200, allow_nan=False),
)
def test_accepted_settings_renew_at_least_once_and_the_job_is_dead_before_the_lease_expires(interval, ttl):
    timing = LeaseTiming(ttl, interval)
    if timing.problem() is not None:
        assert timing.fence_after < interval
        assert LeaseTiming(timing.minimum_ttl(), interval).problem() is None
        return
    assert timing.fence_after >= interval  # a renewal gets its chance before any fence
    # Worst case after the last renewal was sent: noticed a tick + a blocked call late, the job's
    # loop blocked in a call too, then SIGTERM and the grace before SIGKILL.
    dead_by = timing.fence_after + timing.tick + 2 * timing.io_timeout + timing.grace
    assert dead_by <= ttl - timing.drift + 1e-9
    assert timing.drift >= 0.05 * ttl


def test_a_ttl_too_short_for_its_interval_is_refused_in_one_line_naming_both():
    env = {"EXECUTIONER_HEARTBEAT_INTERVAL": "5", "EXECUTIONER_HEARTBEAT_TTL": "8"}
    with pytest.raises(ValueError) as refused:
        WorkerSettings.from_env(env)
    message = str(refused.value)
    assert "EXECUTIONER_HEARTBEAT_TTL (8s)" in message and "INTERVAL (5s)" in message
    assert "\n" not in message
    minimum = LeaseTiming(8, 5).minimum_ttl()
    WorkerSettings.from_env({**env, "EXECUTIONER_HEARTBEAT_TTL": f"{minimum:g}"})  # accepted


# -- the heartbeat thread's decisions, on a fake clock ---------------------------------------------


class FakeChannel:
    def __init__(self) -> None:
        self.reachable = True
        self.cancelled: set[str] = set()
        self.lost: set[str] = set()
        self.renewals: list[tuple[str, float]] = []
        self.now = 0.0

    def check(self, watched, renew):
        if not self.reachable:
            raise RedisConnectionError("link cut")
        for task, _ in renew:
            self.renewals.append((task.job_id, self.now))
        return [t.job_id in self.cancelled for t in watched], [t.job_id not in self.lost for t, _ in renew]


@pytest.fixture
def beats():
    channel = FakeChannel()
    heartbeats = Heartbeats(channel, LeaseTiming(ttl=20, interval=5), clock=lambda: channel.now)
    heartbeats._thread = threading.main_thread()  # tests drive beat() themselves: no thread
    stopped: list[tuple[str, str, JobStatus]] = []

    def watch(job_id: str) -> None:
        task = JobTask(1, 1, job_id, "true")
        heartbeats.watch(task, f"owner-{job_id}", lambda why, st_: stopped.append((job_id, why, st_)), 0.0)

    def run_until(seconds: float) -> None:
        while channel.now + heartbeats.timing.tick <= seconds + 1e-9:
            channel.now = round(channel.now + heartbeats.timing.tick, 6)
            heartbeats.beat()

    return channel, heartbeats, stopped, watch, run_until


def test_leases_are_renewed_each_interval_and_a_reachable_redis_never_fences(beats):
    channel, _, stopped, watch, run_until = beats
    watch("a")
    run_until(60)
    assert stopped == []
    assert [at for _, at in channel.renewals] == [5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60]


def test_cut_off_the_job_is_stopped_error_once_before_its_lease_could_expire(beats):
    channel, _, stopped, watch, run_until = beats
    watch("a")
    run_until(10)  # renewed at 5 and 10
    channel.reachable = False
    run_until(22)
    assert stopped == []  # 12 s without Redis: ridden out
    run_until(23)
    ((job, why, status),) = stopped
    assert job == "a" and status is JobStatus.ERROR and why.startswith("fenced: could not renew")
    channel.reachable = True
    run_until(40)
    assert len(stopped) == 1  # forgotten: stopped once, never renewed again
    assert all(at <= 10 for _, at in channel.renewals)


def test_back_in_time_the_job_keeps_running(beats):
    channel, _, stopped, watch, run_until = beats
    watch("a")
    run_until(5)
    channel.reachable = False
    run_until(17)
    channel.reachable = True
    run_until(60)
    assert stopped == []


def test_a_lease_declared_lost_stops_the_job_error_and_a_cancel_stops_it_cancelled(beats):
    channel, _, stopped, watch, run_until = beats
    watch("lost")
    watch("cancelled")
    watch("fine")
    channel.lost.add("lost")
    channel.cancelled.add("cancelled")
    run_until(5)
    assert sorted((job, status) for job, _, status in stopped) == [
        ("cancelled", JobStatus.CANCELLED),
        ("lost", JobStatus.ERROR),
    ]
    assert any(why.startswith("lease lost") for _, why, _ in stopped)


# -- a real worker runtime, a real Redis that stops answering --------------------------------------


@pytest.fixture
def paused_redis(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.resume()
    server.stop()


def test_a_worker_whose_redis_stops_answering_kills_its_job_before_the_lease_expires(paused_redis, tmp_path):
    from workers.execution import WorkerRuntime

    settings = WorkerSettings.from_env(
        {
            "EXECUTIONER_BROKER_URL": paused_redis.url,
            "EXECUTIONER_HEARTBEAT_INTERVAL": "1",
            "EXECUTIONER_HEARTBEAT_TTL": "6",
            "EXECUTIONER_HOME": str(tmp_path / "home"),
        }
    )
    runtime = WorkerRuntime(settings)
    pidfile = tmp_path / "job.pid"
    task = JobTask(3, 1, "long", f"echo $$ > {pidfile}; exec sleep 120", epoch=1)
    returned: list[dict] = []
    thread = threading.Thread(target=lambda: returned.append(runtime.execute(task.to_dict(), "w1")))
    thread.start()
    assert poll(lambda: pidfile.exists() and pidfile.read_text().strip(), 10)
    pid = int(pidfile.read_text())
    client = paused_redis.client()
    lease = keys.lease("", 3, 1, "long", 1)
    assert poll(lambda: client.pttl(lease) > 0, 5)
    paused_redis.pause()  # from here on, no renewal can reach Redis: the lease ends by cut + 6 s
    cut = time.monotonic()
    assert poll(lambda: not _alive(pid), 10), "the job outlived its lease"
    died_after = time.monotonic() - cut
    assert died_after < 6.0 - settings.lease_timing.drift, died_after
    paused_redis.resume()
    thread.join(30)
    (answer,) = returned
    assert answer["gave_up"].startswith("fenced: could not renew its lease")
    # Not reported as ended and the lease not closed: the coordinator declares the try lost.
    kinds = [json.loads(fields[b"e"])[1] for _, fields in client.xrange(keys.events("", 3))]
    assert kinds == ["started"]
    assert client.get(lease) != keys.DONE.encode()
    client.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead for this purpose
        return stat.read().split(") ", 1)[1][0] != "Z"


@pytest.mark.parametrize("raw", ["inf", "nan", "1e300", "31622401"])
def test_a_heartbeat_setting_past_a_year_or_not_finite_is_refused_in_one_line(raw):
    with pytest.raises(ValueError, match="EXECUTIONER_HEARTBEAT_INTERVAL: must be at most"):
        WorkerSettings.from_env({"EXECUTIONER_HEARTBEAT_INTERVAL": raw})


def test_the_minimum_ttl_of_the_longest_interval_is_found_at_once_and_is_the_smallest():
    longest = 366 * 24 * 3600.0
    minimum = LeaseTiming(1, longest).minimum_ttl()  # a bisection: no stepping through 10^7 values
    assert LeaseTiming(minimum, longest).problem() is None
    assert LeaseTiming(minimum - 0.5, longest).problem() is not None
