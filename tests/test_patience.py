"""Riding out broker outages: the pure retry helper, and the Celery executor's use of it (fakeredis)."""

from __future__ import annotations

import fakeredis
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from orchestrator.errors import ServiceUnavailableError
from orchestrator.executors.celery import CeleryExecutor
from orchestrator.settings import Settings
from workers import keys
from workers.patience import patiently


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def failing(times: int, result: str = "ok"):
    calls = []

    def op() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise RedisConnectionError("Connection refused")
        return result

    return op, calls


def test_retries_with_backoff_until_the_operation_succeeds():
    clock = Clock()
    op, calls = failing(5)
    assert patiently(op, patience=30, what="x", sleep=clock.sleep, clock=clock) == "ok"
    assert len(calls) == 6
    assert clock.sleeps == [0.1, 0.2, 0.4, 0.8, 1.6]


def test_the_delay_is_capped_and_the_deadline_raises_the_last_error():
    clock = Clock()
    op, _ = failing(1000)
    with pytest.raises(RedisConnectionError):
        patiently(op, patience=10, what="x", sleep=clock.sleep, clock=clock)
    assert max(clock.sleeps) == 2.0
    assert clock.now <= 10  # never sleeps past the deadline
    assert clock.now > 10 - 2.0


def test_no_patience_means_one_try_and_other_errors_are_not_retried():
    clock = Clock()
    op, calls = failing(1)
    with pytest.raises(RedisConnectionError):
        patiently(op, patience=0, what="x", sleep=clock.sleep, clock=clock)
    assert len(calls) == 1

    def broken() -> None:
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError):
        patiently(broken, patience=30, what="x", sleep=clock.sleep, clock=clock)
    assert clock.sleeps == []


@pytest.fixture
def server():
    return fakeredis.FakeServer()


@pytest.fixture
def executor(server, tmp_path):
    settings = Settings.from_env({}, home=tmp_path, broker_url="redis://127.0.0.1:1/0", lease_ttl=1.0)
    ex = CeleryExecutor(settings, scope="s")
    ex.redis = fakeredis.FakeRedis(server=server)
    ex.run_id, ex.attempt_id = 7, 1
    yield ex
    ex.redis.close()


def test_acks_refused_by_a_restarting_broker_are_kept_and_sent_with_the_next_batch(executor, server):
    stream = keys.events("s", 7)
    executor.redis.xgroup_create(stream, keys.EVENT_GROUP, id="0", mkstream=True)
    ids = [executor.redis.xadd(stream, {"e": str(i)}).decode() for i in range(3)]
    executor.redis.xreadgroup(keys.EVENT_GROUP, "c", {stream: ">"})

    server.connected = False
    executor.acknowledge(ids[:2])  # no exception: the run goes on
    server.connected = True
    assert executor.redis.xlen(stream) == 3

    executor.acknowledge(ids[2:])
    assert executor.redis.xlen(stream) == 0
    assert executor.redis.xpending(stream, keys.EVENT_GROUP)["pending"] == 0


def test_a_broker_gone_for_longer_than_the_lock_ttl_is_one_clear_error(executor, server):
    server.connected = False
    with pytest.raises(ServiceUnavailableError) as info:
        executor.cancel()
    message = str(info.value)
    assert "unreachable for 1 s" in message and "executioner resume 7" in message
    assert "127.0.0.1:1" in message
