"""Redis-backed pieces with fakeredis: Redlock and fencing, worker claims, the event stream reader."""

from __future__ import annotations

import queue

import fakeredis
import pytest
from sqlalchemy import insert
from support import collect

from orchestrator.db.engine import ensure_schema, make_engine, write_tx
from orchestrator.db.fencing import check_epoch
from orchestrator.db.schema import runs, utcnow
from orchestrator.errors import FencedError, LockedError
from orchestrator.executors.base import JobEnded, JobLost, TryEnded, TryStarted
from orchestrator.executors.stream import StreamReader, ensure_group
from orchestrator.locks.base import LockOwner
from orchestrator.locks.redlock import RedlockManager
from workers import keys
from workers.channel import DONE_TTL_MS, Channel, Claim
from workers.spec import JobResult, JobTask, TryRecord
from workers.statuses import JobStatus
from workers.wire import decode_event


@pytest.fixture
def server():
    return fakeredis.FakeServer()


@pytest.fixture
def redis(server):
    return fakeredis.FakeRedis(server=server)


@pytest.fixture
def engine():
    e = make_engine("sqlite://")
    ensure_schema(e)
    with write_tx(e) as conn:
        conn.execute(
            insert(runs).values(run_id=1, application_name="a", created_at=utcnow(), created_by="t", epoch=0)
        )
    return e


@pytest.fixture
def locks(engine, server, monkeypatch):
    manager = RedlockManager(engine, ("redis://fake:6379/0",), ttl=5)
    manager.masters = [fakeredis.FakeRedis(server=server)]
    return manager


def test_redlock_is_exclusive_names_the_holder_and_bumps_the_epoch(locks):
    first = locks.acquire(1, LockOwner("resume"))
    assert first.epoch == 1
    with pytest.raises(LockedError) as info:
        locks.acquire(1, LockOwner("mark-success"))
    assert "(resume)" in str(info.value) and "pid" in str(info.value)
    holder = locks.holder(1)
    assert holder is not None and holder.what == "resume"
    first.extend()
    first.release()
    assert locks.holder(1) is None
    second = locks.acquire(1, LockOwner("rollback"))
    assert second.epoch == 2
    second.release()


def test_an_expired_redlock_is_taken_over_and_the_old_holder_is_fenced(locks, redis, engine):
    old = locks.acquire(1, LockOwner("run"))
    redis.delete(f"redlock:{keys.run_lock('', 1)}")  # its TTL ran out while its holder was paused
    new = locks.acquire(1, LockOwner("resume"))
    with pytest.raises(FencedError):
        old.extend()
    with write_tx(engine) as conn, pytest.raises(FencedError):
        check_epoch(conn, 1, old.epoch)  # the old holder's history writes are refused
    with write_tx(engine) as conn:
        check_epoch(conn, 1, new.epoch)
    new.release()


def task(epoch=1, first_try=1, job="j") -> JobTask:
    return JobTask(run_id=1, attempt_id=1, job_id=job, command="true", epoch=epoch, first_try=first_try)


def test_a_worker_claims_a_dispatch_once(redis):
    channel = Channel(redis, ttl=5)
    redis.set(keys.epoch("", 1), 1)
    assert channel.claim(task(), "w1") == Claim.RUN
    assert channel.claim(task(), "w2") == Claim.TAKEN  # a redelivered copy while it runs
    channel.ended(task(), JobResult(1, 1, "j", [TryRecord(1, JobStatus.SUCCESS, 0, 1.0, 2.0, "w1")]), "w1")
    assert redis.get(keys.lease("", 1, 1, "j", 1)) == keys.DONE.encode()
    assert channel.claim(task(), "w3") == Claim.TAKEN  # ... or after it finished


def test_a_task_of_an_older_epoch_is_stale(redis):
    channel = Channel(redis, ttl=5)
    redis.set(keys.epoch("", 1), 3)
    assert channel.claim(task(epoch=2), "w1") == Claim.STALE
    assert not redis.exists(keys.lease("", 1, 1, "j", 1))


def test_a_cancelled_attempt_runs_nothing_more(redis):
    channel = Channel(redis, ttl=5)
    redis.set(keys.cancel("", 1, 1), 1)
    assert channel.claim(task(), "w1") == Claim.CANCELLED


def test_renewal_fails_once_the_coordinator_declared_the_try_lost(redis):
    channel = Channel(redis, ttl=5)
    assert channel.claim(task(), "w1") == Claim.RUN
    assert channel.renew(task(), "w1")
    redis.set(keys.lease("", 1, 1, "j", 1), keys.LOST)
    assert not channel.renew(task(), "w1")


def reader(redis, sink, **kw):
    ensure_group(redis, keys.events("", 1))
    return StreamReader(redis, "", 1, 1, sink, check_interval=kw.get("check_interval", 0.05), lease_ttl=1)


def test_the_reader_turns_stream_entries_into_events_and_ignores_other_attempts(redis):
    channel = Channel(redis, ttl=5)
    events: queue.SimpleQueue = queue.SimpleQueue()
    r = reader(redis, events.put)
    r.start()
    try:
        t = task()
        record = TryRecord(1, JobStatus.SUCCESS, 0, 1.0, 2.0, "w1")
        channel.claim(t, "w1", "w1@host")  # announces the first try's start
        channel.try_ended(t, record)
        channel.ended(t, JobResult(1, 1, "j", [record]), "w1")
        other = JobTask(run_id=1, attempt_id=7, job_id="x", command="true")
        channel.started(other, 1, "w1", 1, 1.0)  # an older attempt's leftover: not for us
        got = collect(events, 3)
    finally:
        r.stop()
    assert [type(e) for e in got] == [TryStarted, TryEnded, JobEnded]
    assert all(e.ack for e in got) and got[0].worker == "w1@host" and got[0].try_number == 1
    assert events.empty()


def test_a_lapsed_lease_is_reported_lost_once_and_marked(redis):
    channel = Channel(redis, ttl=5)
    events: queue.SimpleQueue = queue.SimpleQueue()
    r = reader(redis, events.put)
    r._trusted_from = 0.0
    r.start()
    try:
        t = task()
        channel.claim(t, "w1")
        assert isinstance(collect(events, 1)[0], TryStarted)
        redis.delete(keys.lease("", 1, 1, "j", 1))  # the worker died: nobody renews it
        lost = collect(events, 1)
        assert len(lost) == 1 and isinstance(lost[0], JobLost) and lost[0].try_number == 1
        assert collect(events, 1, seconds=0.3) == []  # reported once
    finally:
        r.stop()
    assert redis.get(keys.lease("", 1, 1, "j", 1)) == keys.LOST.encode()
    assert channel.claim(t, "late-copy") == Claim.TAKEN  # the lost copy's redelivery never runs


def test_runs_of_two_databases_sharing_one_redis_never_collide(redis):
    channel = Channel(redis, ttl=5)
    first = JobTask(run_id=1, attempt_id=1, job_id="j", command="true", scope="db1")
    second = JobTask(run_id=1, attempt_id=1, job_id="j", command="true", scope="db2")
    assert channel.claim(first, "w1") == Claim.RUN
    channel.ended(first, JobResult(1, 1, "j", [TryRecord(1, JobStatus.SUCCESS, 0, 1.0, 2.0, "w1")]), "w1")
    assert channel.claim(second, "w2") == Claim.RUN  # run 1 of another database is another run


def test_a_job_end_is_one_round_trip_that_closes_only_its_own_lease(redis, monkeypatch):
    """The end goes out as one script call (a pipeline holding a script costs a SCRIPT EXISTS
    first: one round trip more per job). It is appended even when the lease is no longer the
    worker's — the coordinator decides — and then leaves that lease as it was."""
    from redis.connection import AbstractConnection

    channel = Channel(redis, ttl=5)
    done = JobResult(1, 1, "a", [TryRecord(1, JobStatus.SUCCESS, 0, 1.0, 2.0, "w1")])
    assert channel.claim(task(job="a"), "w1") == Claim.RUN
    channel.ended(task(job="a"), done, "w1")  # the first call loads the script
    assert channel.claim(task(job="b"), "w1") == Claim.RUN
    sends = []
    real = AbstractConnection.send_packed_command
    monkeypatch.setattr(
        AbstractConnection,
        "send_packed_command",
        lambda self, *a, **k: sends.append(1) or real(self, *a, **k),
    )
    channel.ended(task(job="b"), JobResult(1, 1, "b", done.tries), "w1")
    assert len(sends) == 1
    monkeypatch.undo()

    assert channel.claim(task(job="c"), "w1") == Claim.RUN
    redis.set(keys.lease("", 1, 1, "c", 1), keys.LOST)  # declared lost meanwhile
    channel.ended(task(job="c"), JobResult(1, 1, "c", done.tries), "w1")
    assert redis.get(keys.lease("", 1, 1, "c", 1)) == keys.LOST.encode()
    assert 0 < redis.pttl(keys.lease("", 1, 1, "b", 1)) <= DONE_TTL_MS
    assert redis.get(keys.lease("", 1, 1, "b", 1)) == keys.DONE.encode()
    events = [decode_event(fields[b"e"]) for _, fields in redis.xrange(keys.events("", 1))]
    assert [e.job_id for e in events if e.kind == "ended"] == ["a", "b", "c"]
