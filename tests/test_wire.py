"""The wire contract: versioned messages, readers that ignore unknown fields and survive bad entries."""

from __future__ import annotations

import json
import queue

import fakeredis
import pytest
from support import collect

from orchestrator.executors.base import ExecutorFailed, JobEnded, JobLost, TryStarted
from orchestrator.executors.stream import StreamReader, ensure_group, read_batch
from workers import keys
from workers.spec import JobResult, JobTask, TryRecord
from workers.statuses import JobStatus
from workers.wire import WIRE_VERSION, WireError, decode_event, encode_event

RECORD = {
    "try_number": 1,
    "status": "SUCCESS",
    "exit_code": 0,
    "start_time": 1.0,
    "end_time": 2.0,
    "worker": "w",
}


def test_events_and_tasks_carry_the_version_and_round_trip():
    e = decode_event(encode_event("started", 3, "j", 1, 7, {"try": 1}))
    assert (e.kind, e.attempt_id, e.job_id, e.first_try, e.epoch, e.body) == (
        "started",
        3,
        "j",
        1,
        7,
        {"try": 1},
    )
    payload = JobTask(run_id=1, attempt_id=2, job_id="j", command="true").to_dict()
    assert payload["v"] == WIRE_VERSION
    assert JobTask.from_dict(payload).job_id == "j"


def test_a_newer_writer_s_extra_fields_are_ignored():
    newer = json.loads(encode_event("ended", 1, "j", 1, 0, {"tries": [{**RECORD, "cpu_seconds": 3}]}))
    newer.append({"trace_id": "x"})  # a field a newer worker appends to the event
    e = decode_event(json.dumps(newer))
    result = JobResult.from_dict({"run_id": 1, "attempt_id": 1, "job_id": "j", **e.body, "shard": 4})
    assert result.status is JobStatus.SUCCESS and result.final.exit_code == 0
    task = JobTask.from_dict({"run_id": 1, "attempt_id": 1, "job_id": "j", "command": "true", "priority": 9})
    assert task.command == "true"


def test_the_first_release_s_events_are_still_read():
    old = json.dumps(["started", 1, "j", 1, 0, {"try": 1, "worker": "w", "pid": None, "at": 1.0}])
    assert decode_event(old).kind == "started"


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"{}", b"[1, 2]", b'[1, "exploded", 1, "j", 1, 0, {}]', b'[1, "try", "x", "j", 1, 0, {}]'],
)
def test_undecodable_events_raise_wire_errors_not_type_errors(raw):
    with pytest.raises(WireError):
        decode_event(raw)


def test_a_bad_try_record_is_a_wire_error():
    with pytest.raises(WireError):
        TryRecord.from_dict({"status": "SUCCESS"})
    with pytest.raises(WireError):
        JobTask.from_dict({"run_id": "x", "command": "true"})


@pytest.fixture
def redis():
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


def test_a_garbage_entry_is_acknowledged_and_dropped_and_the_next_one_read(redis):
    stream = keys.events("", 1)
    ensure_group(redis, stream)
    redis.xadd(stream, {"e": "garbage"})
    redis.xadd(stream, {"x": "no e field"})
    redis.xadd(stream, {"e": encode_event("started", 1, "j", 1, 0, {"try": 1, "worker": "w", "at": 1.0})})
    entries = read_batch(redis, stream, "c", block_ms=None)
    assert [e.kind for e in entries] == ["started"]
    assert redis.xpending(stream, keys.EVENT_GROUP)["pending"] == 1  # the two bad ones were acked


def test_an_entry_whose_body_cannot_be_read_turns_its_job_to_error_at_once(redis):
    stream = keys.events("", 1)
    ensure_group(redis, stream)
    events: queue.SimpleQueue = queue.SimpleQueue()
    reader = StreamReader(redis, "", 1, 1, events.put, check_interval=0.05, lease_ttl=1)
    reader.start()
    try:
        redis.xadd(stream, {"e": encode_event("started", 1, "j", 1, 0, {"try": 1, "worker": "w", "at": 1.0})})
        redis.xadd(stream, {"e": encode_event("ended", 1, "j", 1, 0, {"tries": [{"status": "WEIRD"}]})})
        got = collect(events, 2)
    finally:
        reader.stop()
    assert isinstance(got[0], TryStarted)
    assert isinstance(got[1], JobLost) and "unreadable result" in got[1].reason
    assert reader.failure is None  # the reader lives on


def test_a_reader_that_dies_says_so_and_wakes_the_coordinator(redis):
    stream = keys.events("", 1)
    ensure_group(redis, stream)
    events: queue.SimpleQueue = queue.SimpleQueue()

    def sink(event):
        if isinstance(event, JobEnded):
            raise RuntimeError("a bug in the sink")
        events.put(event)

    reader = StreamReader(redis, "", 1, 1, sink, check_interval=0.05, lease_ttl=1)
    reader.start()
    try:
        result = JobResult(1, 1, "j", [TryRecord.from_dict(RECORD)])
        redis.xadd(stream, {"e": encode_event("ended", 1, "j", 1, 0, result.to_dict())})
        got = collect(events, 1)
    finally:
        reader.stop()
    assert isinstance(got[0], ExecutorFailed) and "a bug in the sink" in got[0].reason
    assert "a bug in the sink" in reader.failure
