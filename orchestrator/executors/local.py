"""The embedded default: jobs run in a pool process (``workers.pool``) that outlives this coordinator.

The pool runs ``workers.runner.run_job`` in threads, journals every event on disk and sends it here
over a pipe; a thread of this executor turns the lines into events for the coordinator's queue.
Each journal segment is deleted once every dispatch in it has its end in the history. If this
process dies, the pool finishes the jobs it had started and their results wait in the
journal for ``resume``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from orchestrator.errors import ServiceUnavailableError
from orchestrator.executors.base import Executor, ExecutorFailed, Sink, to_event
from workers.journal import SEGMENT_DISPATCHES, Journal
from workers.pool import READY
from workers.pool_start import start_pool
from workers.spec import JobTask
from workers.wire import WIRE_VERSION, WireError, decode_event

log = logging.getLogger("executioner.local")
START_SECONDS = 30.0  # for the pool process to start and take its journal lock
CLOSE_SECONDS = 30.0  # for it to exit once told to (its jobs have all ended by then)
BACKLOG = 32  # jobs queued in the pool beyond those running


class LocalExecutor(Executor):
    name = "local"

    def __init__(
        self,
        max_workers: int,
        journal: Journal,
        log_store: str | None = None,
        home: str = "",
        started: Callable[[], subprocess.Popen | None] | None = None,
    ) -> None:
        self.max_workers = max_workers
        self.journal = journal
        self.log_store, self.home = log_store, home  # passed to the pool (workers.logstore)
        # A pool the command started ahead (workers.pool_start), taken when the attempt opens: an
        # executor made only to recover an older attempt leaves it to the run's own.
        self._started = started
        self.scope = journal.root.name  # the installation's: journals live in <home>/journal/<scope>
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._write_lock = threading.Lock()
        self._closing = False
        self._failure: str | None = None
        self.run_id = self.attempt_id = None
        # Dispatch -> its journal segment while its end is not in the history, and per segment how
        # many such. The coordinator's thread alone touches them (submit, acknowledge, close).
        self._segment_of: dict[tuple[str, int], int] = {}
        self._unrecorded: dict[int, int] = {}
        self._submitted = 0

    def dispatch_limit(self, parallel: int | None) -> int | None:
        # A backlog in the pool's queue: a thread that finishes a job starts the next at once instead
        # of idling for the round trip through this process. Still at most ``parallel`` running.
        return None if parallel is None else parallel + max(parallel, BACKLOG)

    def dispatch_batch(self, limit: int | None) -> int:
        # Refill the backlog by halves: one pipe write (and one wake-up of the pool) per half a
        # backlog of jobs instead of one per job, and the pool never runs dry meanwhile.
        return 1 if limit is None else max(1, (limit - self.max_workers) // 2)

    def open(self, run_id: int, attempt_id: int, epoch: int, sink: Sink) -> None:
        self.run_id, self.attempt_id = run_id, attempt_id
        self.journal.prepare(run_id, attempt_id)
        self.journal.publish_epoch(run_id, epoch)
        args = [str(self.journal.root), str(run_id), str(attempt_id), str(epoch), str(self.max_workers)]
        args += [self.log_store or "", self.home]
        ahead = self._started() if self._started is not None else None
        self._proc, ready = _opened(ahead, args) if ahead is not None else (None, b"")
        if self._proc is None:  # none was started ahead, or it died meanwhile: one started now
            self._proc, ready = _opened(start_pool(self.home), args)
        if self._proc is None:
            raise ServiceUnavailableError(f"the local job pool did not start (it said {ready[:80]!r})")
        self._reader = threading.Thread(target=self._read, args=(sink,), name=f"pool-{run_id}", daemon=True)
        self._reader.start()

    def _read(self, sink: Sink) -> None:
        proc = self._proc  # close() may drop its own reference meanwhile
        assert proc is not None and proc.stdout is not None
        for raw in proc.stdout:
            try:
                e = decode_event(raw)
                ack = (e.job_id, e.first_try) if e.kind == "ended" else None  # that dispatch is done
                event = to_event(e.kind, e.job_id, e.first_try, e.body, ack)
            except (WireError, KeyError, TypeError, ValueError) as exc:
                log.error("run %s: unreadable event from the local pool: %s", self.run_id, exc)
                continue
            sink(event)
        code = proc.wait()
        if not self._closing:
            self._failure = f"the local job pool of run {self.run_id} exited unexpectedly (code {code})"
            log.error("%s", self._failure)
            sink(ExecutorFailed(self._failure))

    def _send(self, message: dict[str, Any] | None, flush: bool = True) -> None:
        """Write one message (None: nothing) to the pool, and flush if asked."""
        if self._proc is None or self._proc.stdin is None:
            return
        data = b"" if message is None else json.dumps({"v": WIRE_VERSION, **message}).encode() + b"\n"
        with self._write_lock:
            try:
                self._proc.stdin.write(data)
                if flush:
                    self._proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError) as exc:
                self._failure = self._failure or f"the local job pool of run {self.run_id} is gone ({exc})"

    def submit(self, task: JobTask) -> None:
        payload = task.to_dict()
        payload["scope"] = self.scope  # names the try's files in the log store, as on Celery
        segment, key = self._submitted // SEGMENT_DISPATCHES, (task.job_id, task.first_try)
        self._submitted += 1
        self._unrecorded[segment] = self._unrecorded.get(segment, 0) + 1
        self._segment_of[key] = segment
        self._send({"op": "run", "task": payload, "segment": segment}, flush=False)  # sent by flush()

    def flush(self) -> None:
        self._send(None)

    def cancel(self) -> None:
        self._send({"op": "cancel"})

    def acknowledge(self, acks: list[Any]) -> None:
        for key in acks:  # in the history now: the journal need not keep them
            segment = self._segment_of.pop(key, None)
            if segment is not None:
                self._unrecorded[segment] -= 1
                self._delete_if_recorded(segment)

    def _delete_if_recorded(self, segment: int) -> None:
        # Only a segment no more submits go to (its last one counts it past): the current one would
        # be created again at once.
        if segment < self._submitted // SEGMENT_DISPATCHES and self._unrecorded[segment] == 0:
            del self._unrecorded[segment]
            with contextlib.suppress(FileNotFoundError):
                self.journal.segment_file(self.run_id, self.attempt_id, segment).unlink()

    def failure(self) -> str | None:
        return self._failure

    def close(self, abandon: bool = False) -> None:
        if self._proc is None:
            return
        self._closing = True
        if not abandon:
            self._send({"op": "close"})
        with contextlib.suppress(OSError):
            self._proc.stdin.close()  # without "close" first: the pool finishes what runs, then exits
        if not abandon:
            try:
                self._proc.wait(CLOSE_SECONDS)
            except subprocess.TimeoutExpired:
                log.warning("run %s: the local job pool is still busy; leaving it to finish", self.run_id)
            if self._reader is not None:
                self._reader.join(CLOSE_SECONDS)
            if not self._segment_of:
                self.journal.remove_attempt(self.run_id, self.attempt_id)  # all recorded
        self._proc = None


def _opened(proc: subprocess.Popen, args: list[str]) -> tuple[subprocess.Popen | None, bytes]:
    """Tell a pool its attempt (``workers.pool_start``): the pool and its answer, or None and what it
    said (b"": nothing) once a pool that did not answer ready is stopped."""
    try:
        proc.stdin.write(json.dumps({"v": WIRE_VERSION, "op": "open", "args": args}).encode() + b"\n")
        proc.stdin.flush()
        ready = _read_line(proc.stdout, START_SECONDS)
    except (ValueError, OSError):  # its pipe is closed: it is gone
        ready = b""
    if ready.startswith(READY):
        return proc, ready
    proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        with contextlib.suppress(OSError):
            pipe.close()
    return None, ready


def _read_line(stream, seconds: float) -> bytes:
    """The pool's first line, or b"" if it says nothing within ``seconds`` (it died starting)."""
    import select

    ready, _, _ = select.select([stream], [], [], seconds)
    return stream.readline() if ready else b""
