"""The local pool's journal: one append-only file per attempt, read back by a recovery."""

from __future__ import annotations

import threading

from orchestrator.executors.base import JobEnded, TryStarted
from orchestrator.executors.local_recovery import _read, _running, peek
from workers.journal import Journal
from workers.pool import Pool
from workers.spec import JobTask
from workers.wire import encode_event


class _Out:
    """The coordinator's end of the pipe: what the pool said, and an event per job end."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.ended = threading.Semaphore(0)

    def write(self, data: bytes) -> None:
        self.lines.append(data)
        if b'"ended"' in data:
            self.ended.release()

    def flush(self) -> None:
        pass


def _task(job: str, epoch: int = 1) -> JobTask:
    return JobTask(run_id=1, attempt_id=1, job_id=job, command="true", epoch=epoch)


def _line(kind: str, job: str, body: dict | None = None, first_try: int = 1) -> bytes:
    return encode_event(kind, 1, job, first_try, 1, body or {}).encode() + b"\n"


def _started(job: str) -> bytes:
    return _line("started", job, {"try": 1, "worker": "h", "pid": 10, "at": 1.0})


def _ended(job: str) -> bytes:
    record = {"try_number": 1, "status": "SUCCESS", "exit_code": 0, "start_time": 1.0, "end_time": 2.0}
    body = {"run_id": 1, "attempt_id": 1, "job_id": job, "epoch": 1, "tries": [{**record, "worker": "h"}]}
    return _line("ended", job, body)


def test_every_job_the_pool_ran_is_in_one_file_and_a_clean_journal_has_nothing_running(tmp_path):
    journal = Journal(tmp_path)
    journal.prepare(1, 1)
    out = _Out()
    pool = Pool(journal, 1, 1, 1, 2, out)
    source = [b'{"v": 1, "op": "run", "task": %s}\n' % _json(_task(f"j{i}")) for i in range(5)]

    def lines():
        yield from source
        for _ in range(5):
            assert out.ended.acquire(timeout=30)
        yield b'{"op": "close"}\n'

    pool.serve(lines())
    folder = journal.attempt_dir(1, 1)
    assert sorted(p.name for p in folder.iterdir() if p.suffix == ".jsonl") == ["events@0.jsonl"]
    dispatches = _read(journal, 1, 1)
    assert sorted(key for key, _ in dispatches) == [f"j{i}.1" for i in range(5)]
    assert all(isinstance(events[-1], JobEnded) for _, events in dispatches)
    assert _running(dispatches) == []
    assert len(out.lines) == 10  # started and ended of each, also on the pipe


def test_a_pool_fenced_by_a_newer_epoch_drops_what_it_takes_and_nothing_reads_as_running(tmp_path):
    journal = Journal(tmp_path)
    journal.prepare(1, 1)
    journal.publish_epoch(1, 2)  # a resume took the run over
    pool = Pool(journal, 1, 1, 1, 1, _Out())
    pool.serve(iter([b'{"v": 1, "op": "run", "task": %s}\n' % _json(_task("late"))]))
    text = journal.segment_file(1, 1, 0).read_text()
    assert '"taken"' in text and '"dropped"' in text and '"started"' not in text
    assert _read(journal, 1, 1) == [] and peek(journal, 1, 1) == []


def test_taken_without_an_end_is_running_and_a_torn_last_line_is_left_out(tmp_path):
    journal = Journal(tmp_path)
    journal.prepare(1, 1)
    lines = [_line("taken", "a"), _line("taken", "b"), _started("a"), _ended("b"), _started("c")]
    journal.segment_file(1, 1, 0).write_bytes(b"".join(lines) + _ended("a")[:-9])  # a crash mid-write
    dispatches = dict(_read(journal, 1, 1))
    assert [type(e) for e in dispatches["a.1"]] == [TryStarted]
    assert [type(e) for e in dispatches["b.1"]] == [JobEnded]
    assert _running(list(dispatches.items())) == ["a", "c"]


def test_a_garbage_line_is_skipped_and_the_rest_is_read(tmp_path):
    journal = Journal(tmp_path)
    journal.prepare(1, 1)
    journal.segment_file(1, 1, 0).write_bytes(
        b"\x00not json\n" + b'["x"]\n' + _line("taken", "a") + _ended("a")
    )
    assert [key for key, _ in _read(journal, 1, 1)] == ["a.1"]


def test_a_journal_left_by_a_pool_before_the_upgrade_is_still_read_and_removed(tmp_path):
    """Pools before 2026-11-29 wrote a file per dispatch: a run one left behind is still resumed."""
    journal = Journal(tmp_path)
    folder = journal.prepare(1, 1)
    (folder / "old.1.jsonl").write_bytes(_started("old") + _ended("old"))
    (folder / "busy.2.jsonl").write_bytes(b"")  # created, not yet started: it may still start
    (folder / "events.1.jsonl").write_bytes(_started("events"))  # a job named "events"
    journal.segment_file(1, 1, 0).write_bytes(_line("taken", "new") + _ended("new"))
    dispatches = dict(_read(journal, 1, 1))
    assert list(dispatches) == ["busy.2", "events.1", "old.1", "new.1"]
    assert isinstance(dispatches["old.1"][-1], JobEnded)
    assert _running(list(dispatches.items())) == ["busy", "events"]
    journal.remove_attempt(1, 1)
    assert not folder.exists()


def test_dispatches_go_to_the_segment_the_coordinator_names_and_each_segment_goes_once_recorded(
    tmp_path, monkeypatch
):
    from orchestrator.executors import local

    monkeypatch.setattr(local, "SEGMENT_DISPATCHES", 3)
    journal = Journal(tmp_path)
    folder = journal.prepare(1, 1)
    executor = local.LocalExecutor(2, journal)
    executor.run_id, executor.attempt_id = 1, 1  # no pool: the bookkeeping alone
    tasks = [_task(f"j{i}") for i in range(7)]  # segments 0 0 0 1 1 1 2
    for t in tasks[:5]:
        executor.submit(t)
    for segment in range(3):
        journal.segment_file(1, 1, segment).write_bytes(b"")  # what the pool would have written
    executor.acknowledge([("j0", 1), ("j1", 1), ("j4", 1)])
    assert sorted(p.name for p in folder.glob("*.jsonl")) == [f"events@{n}.jsonl" for n in range(3)]
    executor.acknowledge([("j2", 1)])  # segment 0 complete and recorded: gone
    assert sorted(p.name for p in folder.glob("*.jsonl")) == ["events@1.jsonl", "events@2.jsonl"]
    executor.acknowledge([("j3", 1)])  # all of segment 1 so far recorded, but it may get more: kept
    assert (folder / "events@1.jsonl").exists()
    executor.submit(tasks[5])
    executor.submit(tasks[6])  # segment 2 begins; j5 (segment 1) is not recorded yet
    executor.acknowledge([("j6", 1), ("unknown", 9)])  # an unknown key is ignored
    assert sorted(p.name for p in folder.glob("*.jsonl")) == ["events@1.jsonl", "events@2.jsonl"]
    executor.acknowledge([("j5", 1)])
    assert sorted(p.name for p in folder.glob("*.jsonl")) == ["events@2.jsonl"]  # the current one stays
    for t in (_task("j7"), _task("j8")):
        executor.submit(t)
    executor.acknowledge([("j7", 1)])
    assert (folder / "events@2.jsonl").exists()
    executor.acknowledge([("j8", 1)])  # its last dispatch was sent and all are recorded
    assert list(folder.glob("*.jsonl")) == []


def test_the_pool_writes_each_dispatch_to_its_segment_and_closes_what_it_no_longer_needs(tmp_path):
    journal = Journal(tmp_path)
    journal.prepare(1, 1)
    out = _Out()
    pool = Pool(journal, 1, 1, 1, 2, out)
    source = [
        b'{"v": 1, "op": "run", "task": %s, "segment": %d}\n' % (_json(_task(f"j{i}")), i // 2)
        for i in range(5)
    ]

    def lines():
        yield from source
        for _ in range(5):
            assert out.ended.acquire(timeout=30)
        assert pool._writer._open == {}  # every dispatch ended: no segment held open
        yield b'{"op": "close"}\n'

    pool.serve(lines())
    for segment, jobs in ((0, {"j0", "j1"}), (1, {"j2", "j3"}), (2, {"j4"})):
        text = journal.segment_file(1, 1, segment).read_text()
        assert {line.split(", ")[3].strip('"') for line in text.splitlines()} == jobs


def _json(task: JobTask) -> bytes:
    import json

    return json.dumps(task.to_dict()).encode()
