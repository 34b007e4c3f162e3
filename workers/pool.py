"""The local executor's pool: one process per attempt that runs its jobs and outlives its coordinator.

The coordinator starts it (``python -m workers.pool --await-open``, possibly before the attempt
exists: ``workers.pool_start``) and talks to it over two pipes, one JSON line per message
(``workers.wire``). It runs each job with ``workers.runner.run_job`` in a thread of its own, started
as jobs arrive, and writes every event to the attempt's journal (``workers.journal``) *before*
sending it on: if the coordinator dies (SIGKILL, a long pause, a database outage it gave
up on), jobs already running finish, their results stay on disk, and the next ``resume`` records
their real exit codes instead of re-running them. Jobs it was sent but had not started are dropped
(the resume runs them).

Coordinator -> pool: first ``{"v": 1, "op": "open", "args": [journal, run, attempt, epoch, threads,
log store, home]}``, then ``{"v": 1, "op": "run", "task": {...}, "segment": S}`` (S: its journal
segment), ``{"op": "cancel"}``, ``{"op": "close"}``.
Pool -> coordinator: ``ready``, then one event per line, ``[v, kind, attempt, job, first try, epoch,
body]``, the same events Celery workers put on a run's stream.

It stops starting jobs as soon as the run's epoch moves past the one it was started with (a resume
took the run over), and exits when its running jobs have ended and no coordinator needs it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import BinaryIO

from workers.collector import tune_collector
from workers.journal import DROPPED, MAX_SEGMENT, TAKEN, Journal, JournalWriter
from workers.logstore import LogStore, log_store
from workers.pool_start import AWAIT_OPEN
from workers.reaper import Reaper
from workers.runner import CancelToken, RunnerHooks, run_job
from workers.spec import JobResult, JobTask, TryRecord
from workers.statuses import JobStatus
from workers.wire import WIRE_VERSION, WireError, encode_event

log = logging.getLogger("executioner.pool")
READY = b"ready"
EPOCH_CHECK_SECONDS = 1.0


class ThreadPool:
    """Threads started as jobs arrive (a huge parallelism costs nothing up front), fed by one queue."""

    def __init__(self, max_workers: int, run) -> None:
        self.max_workers, self.run = max_workers, run
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []

    def submit(self, task) -> None:
        if len(self.threads) < self.max_workers:
            thread = threading.Thread(target=self._work, name=f"job-{len(self.threads)}", daemon=True)
            thread.start()
            self.threads.append(thread)
        self.queue.put(task)

    def _work(self) -> None:
        while (task := self.queue.get()) is not None:
            self.run(task)

    def join(self) -> None:
        for _ in self.threads:
            self.queue.put(None)
        for thread in self.threads:
            thread.join()


class Pool:
    def __init__(
        self,
        journal: Journal,
        run_id: int,
        attempt_id: int,
        epoch: int,
        max_workers: int,
        out: BinaryIO,
        log_store: LogStore | None = None,
    ) -> None:
        self.journal, self.run_id, self.attempt_id, self.epoch = journal, run_id, attempt_id, epoch
        self._writer = JournalWriter(journal, run_id, attempt_id)
        self._epoch_file = str(journal.epoch_file(run_id))  # a plain string: read per job
        self.out = out
        self._out_lock = threading.Lock()
        self.coordinator_gone = False
        self.accepting = True  # False once closed, fenced or orphaned: queued jobs are dropped
        self.cancel = CancelToken()
        self.worker = socket.gethostname()
        self.hooks = RunnerHooks(
            on_try_start=self._try_started,
            on_try_end=self._try_ended,
            cancel=self.cancel,
            reaper=Reaper(),  # this process adopts the jobs' orphans: none is left behind
            worker_name=self.worker,
            base_env=dict(os.environb),
            log_store=log_store,
            stdin=os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC),  # one for every job
        )
        # The epoch file as read last, (inode, mtime) and its value: set value first (threads share it)
        self._epoch_seen: tuple[int, int] | None = None
        self._newest_epoch = 0
        self.threads = ThreadPool(max_workers, self._run)
        self._segments: dict[tuple[str, int], int] = {}  # dispatch in the pool -> its journal segment

    # -- messages from the coordinator ----------------------------------------------------------------

    def serve(self, source: BinaryIO) -> None:
        watcher = threading.Thread(target=self._watch_epoch, name="epoch", daemon=True)
        watcher.start()
        for raw in source:
            try:
                message = json.loads(raw)
                op = message.get("op")
            except (ValueError, AttributeError):
                log.error("pool: ignoring an unreadable message")
                continue
            if op == "run" and self.accepting:
                try:
                    segment = message.get("segment", 0)
                    if not isinstance(segment, int) or not 0 <= segment <= MAX_SEGMENT:
                        raise WireError(f"bad segment {str(segment)[:40]!r}")
                    self.threads.submit((JobTask.from_dict(message["task"]), segment))
                except (WireError, KeyError) as exc:
                    log.error("pool: refusing a task: %s", exc)
            elif op == "cancel":
                self.cancel.cancel()
            elif op == "close":
                break
        else:  # the pipe closed without "close": the coordinator died
            self.coordinator_gone = True
            log.warning("pool of run %s attempt %s: coordinator gone", self.run_id, self.attempt_id)
        self.accepting = False
        self.threads.join()
        self.cancel.close()
        self._writer.close()
        os.close(self.hooks.stdin)

    def _watch_epoch(self) -> None:
        while self.accepting:
            time.sleep(EPOCH_CHECK_SECONDS)
            if self._fenced():
                log.warning("pool of run %s: a newer holder took the run; starting nothing more", self.run_id)
                self.accepting = False

    def _fenced(self) -> bool:
        # Checked before every job: a stat, and a read only when the file was replaced since.
        try:
            st = os.stat(self._epoch_file)
            if (st.st_ino, st.st_mtime_ns) != self._epoch_seen:
                with open(self._epoch_file, "rb") as f:
                    newest = int(f.read() or 0)
                self._newest_epoch = max(self._newest_epoch, newest)
                self._epoch_seen = (st.st_ino, st.st_mtime_ns)
            return self._newest_epoch > self.epoch
        except (OSError, ValueError):
            return False

    # -- one job ------------------------------------------------------------------------------------

    def _run(self, item: tuple[JobTask, int]) -> None:
        task, segment = item
        self._segments[(task.job_id, task.first_try)] = segment
        # Taken first, the fence second: a recovery publishes the new epoch, then reads the journal.
        # A job whose check came before the publish is in it (and waited for); one after is dropped.
        self._journal(task, TAKEN, {}, taken=True)
        if not self.accepting or self._fenced():
            self._journal(task, DROPPED, {}, done=True)
            del self._segments[(task.job_id, task.first_try)]
            return  # never started, so a resume runs it
        try:
            result = run_job(task, self.hooks)
        except Exception as exc:  # never lose the event: the coordinator would wait forever
            now = time.time()
            error = f"runner failed: {exc!r}"
            record = TryRecord(task.first_try, JobStatus.ERROR, None, now, now, self.worker, error=error)
            result = JobResult(task.run_id, task.attempt_id, task.job_id, [record], task.epoch)
        self._emit(task, "ended", result.to_dict(), done=True)
        del self._segments[(task.job_id, task.first_try)]

    def _try_started(self, task: JobTask, try_number: int, pid: int, at: float) -> None:
        self._emit(task, "started", {"try": try_number, "worker": self.worker, "pid": pid, "at": at})

    def _try_ended(self, task: JobTask, record: TryRecord, final: bool) -> None:
        if not final:  # the last try comes with "ended": one event less per job
            self._emit(task, "try", record.to_dict())

    def _emit(self, task: JobTask, kind: str, body: dict, done: bool = False) -> None:
        data = self._journal(task, kind, body, done=done)  # on disk first: survives any process death
        with self._out_lock:
            if self.coordinator_gone:
                return
            try:
                self.out.write(data)
                self.out.flush()
            except (BrokenPipeError, OSError):
                self.coordinator_gone = True

    def _journal(
        self, task: JobTask, kind: str, body: dict, taken: bool = False, done: bool = False
    ) -> bytes:
        line = encode_event(kind, task.attempt_id, task.job_id, task.first_try, task.epoch, body)
        data = line.encode() + b"\n"
        try:
            self._writer.append(self._segments[(task.job_id, task.first_try)], data, taken=taken, done=done)
        except OSError as exc:  # a full disk: the coordinator still hears of it, only a crash loses it
            log.error("pool: cannot journal %s of %s: %s", kind, task.job_id, exc)
        return data


def main(argv: list[str] | None = None) -> int:
    args = argv or sys.argv[1:]
    if args[:1] == [AWAIT_OPEN]:  # started before its attempt existed (workers.pool_start)
        opened = _open_message(sys.stdin.buffer)
        if opened is None:
            return 0  # never opened: the command that started it did not need it after all
        args = opened
    root, run_id, attempt_id, epoch, max_workers = args[:5]
    # The coordinator's log store (EXECUTIONER_LOG_STORE and home, resolved there: see LocalExecutor).
    store = log_store(args[5] or None, Path(args[6])) if len(args) >= 7 else None
    journal = Journal(Path(root))
    folder = journal.prepare(int(run_id), int(attempt_id))
    logging.basicConfig(
        filename=str(folder / "pool.log"), level=logging.INFO, format="%(asctime)s %(message)s"
    )
    lock_fd = os.open(journal.lock_file(int(run_id), int(attempt_id)), os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(lock_fd, fcntl.LOCK_EX)  # held until exit: "the pool is alive" for a recovery
    # Ctrl-C reaches the coordinator, which cancels through the pipe; an operator's SIGTERM to the
    # pool itself cancels its jobs (they are recorded CANCELLED) rather than orphaning them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tune_collector()
    out = sys.stdout.buffer
    pool = Pool(journal, int(run_id), int(attempt_id), int(epoch), int(max_workers), out, store)
    signal.signal(signal.SIGTERM, lambda *_: pool.cancel.cancel())
    out.write(READY + b" %d\n" % WIRE_VERSION)
    out.flush()
    pool.serve(sys.stdin.buffer)
    return 0


def _open_message(source: BinaryIO) -> list[str] | None:
    """The arguments the first message gives, ``{"v": 1, "op": "open", "args": [...]}`` (unknown
    fields ignored); None if the input ends first."""
    line = source.readline()
    if not line:
        return None
    try:
        message = json.loads(line)
        args = message["args"] if message.get("op") == "open" else None
    except (ValueError, AttributeError, KeyError, TypeError):
        args = None
    if not isinstance(args, list) or not all(isinstance(a, str | int) for a in args) or len(args) < 5:
        raise WireError(f"the pool's first message is not an open: {line[:80]!r}")
    return [str(a) for a in args]


if __name__ == "__main__":
    sys.exit(main())
