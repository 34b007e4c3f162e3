"""The job runner: the one function both executors use to run a job with its retry policy.

Each try is a subprocess in its own session (process group). The runner waits on a pidfd, the two
output pipes and a cancel eventfd in one ``select`` loop, so it notices the exit, the timeout and a
cancellation the moment they happen, without polling and without a thread per pipe.
"""

from __future__ import annotations

import contextlib
import os
import random
import selectors
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from workers.retry import decide
from workers.spec import OUTPUT_TAIL_BYTES, JobResult, JobTask, TryRecord
from workers.statuses import JobStatus

KILL_GRACE_SECONDS = 3.0  # between SIGTERM and SIGKILL of a timed-out or cancelled job
DRAIN_SECONDS = 0.5  # how long to keep reading pipes held open by killed stragglers
_READ_CHUNK = 65536


class CancelToken:
    """Cancels every job that shares it: wakes their select loops and their retry waits at once."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def fileno(self) -> int:
        return self._fd

    def cancel(self) -> None:
        if not self._event.is_set():
            self._event.set()
            os.eventfd_write(self._fd, 1)  # stays readable: every runner's select wakes

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless cancelled first; True if cancelled."""
        return self._event.wait(seconds)

    def close(self) -> None:
        os.close(self._fd)


@dataclass(slots=True)
class RunnerHooks:
    """Callbacks the executor passes in; each is optional and must be quick."""

    on_try_start: Callable[[JobTask, int, int, float], None] | None = None  # task, try, pid, start
    on_try_end: Callable[[JobTask, TryRecord], None] | None = None
    cancel: CancelToken | None = None
    worker_name: str | None = None
    jitter: Callable[[], float] = random.random


def run_job(task: JobTask, hooks: RunnerHooks | None = None) -> JobResult:
    """Run ``task`` through its tries per its retry policy; always returns a result, never raises."""
    hooks = hooks or RunnerHooks()
    worker = hooks.worker_name or socket.gethostname()
    tries: list[TryRecord] = []
    first_start = task.first_started_at
    try_number = task.first_try
    delay = 0.0
    while True:
        record = run_try(task, try_number, hooks, worker)
        record.delay_before = delay
        tries.append(record)
        if hooks.on_try_end:
            hooks.on_try_end(task, record)
        if first_start is None:
            first_start = record.start_time
        decision = decide(
            task.retry,
            status=record.status,
            exit_code=record.exit_code,
            try_number=try_number,
            elapsed_since_first_start=record.end_time - first_start,
            jitter_sample=hooks.jitter(),
        )
        if not decision.retry:
            break
        delay = decision.delay
        if delay > 0 and hooks.cancel is not None and hooks.cancel.wait(delay):
            break  # cancelled while waiting to retry: the last try's outcome stands
        if delay > 0 and hooks.cancel is None:
            time.sleep(delay)
        try_number += 1
    return JobResult(task.run_id, task.attempt_id, task.job_id, tries, epoch=task.epoch)


def job_environment(task: JobTask, try_number: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(task.env)
    env["EXECUTIONER_RUN_ID"] = str(task.run_id)
    env["EXECUTIONER_ATTEMPT_ID"] = str(task.attempt_id)
    env["EXECUTIONER_JOB_ID"] = task.job_id
    env["EXECUTIONER_TRY"] = str(try_number)
    return env


def run_try(task: JobTask, try_number: int, hooks: RunnerHooks, worker: str) -> TryRecord:
    start = time.time()

    def ended(status: JobStatus, code: int | None = None, error: str | None = None, **kw) -> TryRecord:
        return TryRecord(try_number, status, code, start, time.time(), worker, error=error, **kw)

    if hooks.cancel is not None and hooks.cancel.cancelled:
        return ended(JobStatus.CANCELLED, error="cancelled before it started")
    if task.working_dir is not None and not os.path.isdir(task.working_dir):
        return ended(JobStatus.ERROR, error=f"working_dir {task.working_dir!r} does not exist")
    argv = ["/bin/sh", "-c", task.command] if isinstance(task.command, str) else list(task.command)
    try:
        proc = subprocess.Popen(
            argv,
            cwd=task.working_dir,
            env=job_environment(task, try_number),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: timeouts and cancels kill the whole tree
        )
    except OSError as exc:
        return ended(JobStatus.ERROR, error=f"could not start {argv[0]!r}: {exc.strerror or exc}")
    if hooks.on_try_start:
        hooks.on_try_start(task, try_number, proc.pid, start)
    outcome = _supervise(proc, task.timeout, hooks.cancel)
    return ended(
        outcome.status,
        outcome.exit_code,
        outcome.error,
        pid=proc.pid,
        stdout_tail=_decode(outcome.stdout),
        stderr_tail=_decode(outcome.stderr),
    )


@dataclass(slots=True)
class _Outcome:
    status: JobStatus
    exit_code: int | None
    error: str | None
    stdout: bytearray
    stderr: bytearray


def _supervise(proc: subprocess.Popen, timeout: float | None, cancel: CancelToken | None) -> _Outcome:
    """Wait for ``proc`` while keeping the tail of its output; enforce timeout and cancellation."""
    pidfd = os.pidfd_open(proc.pid)
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    buffers = {out_fd: bytearray(), err_fd: bytearray()}
    sel = selectors.DefaultSelector()
    for fd in buffers:
        sel.register(fd, selectors.EVENT_READ)
    sel.register(pidfd, selectors.EVENT_READ)
    if cancel is not None:
        sel.register(cancel.fileno(), selectors.EVENT_READ)
    deadline = None if timeout is None else time.monotonic() + timeout
    killed_for: JobStatus | None = None
    kill_at = None  # when to escalate SIGTERM to SIGKILL
    exited = False
    try:
        while not exited:
            now = time.monotonic()
            waits = [t - now for t in (deadline if killed_for is None else None, kill_at) if t is not None]
            for key, _ in sel.select(max(0.0, min(waits)) if waits else None):
                fd = key.fd
                if fd == pidfd:
                    exited = True
                elif cancel is not None and fd == cancel.fileno():
                    sel.unregister(fd)  # level-triggered and shared: read it once, never drain it
                    if killed_for is None:
                        killed_for, kill_at = JobStatus.CANCELLED, _terminate(proc.pid)
                elif not _read_into(fd, buffers[fd]):
                    sel.unregister(fd)
            now = time.monotonic()
            if not exited and killed_for is None and deadline is not None and now >= deadline:
                killed_for, kill_at = JobStatus.TIMEOUT, _terminate(proc.pid)
            elif not exited and kill_at is not None and now >= kill_at:
                _signal_group(proc.pid, signal.SIGKILL)
                kill_at = None
        # The leader is a zombie until waited for, so its pid (= the group id) cannot be reused yet:
        # stragglers it left in the background are killed now, a job leaves nothing behind.
        _signal_group(proc.pid, signal.SIGKILL if killed_for else signal.SIGTERM)
        returncode = proc.wait()
        _drain(sel, buffers, pidfd, cancel)
    finally:
        sel.close()
        os.close(pidfd)
        proc.stdout.close()
        proc.stderr.close()
    stdout, stderr = buffers[out_fd], buffers[err_fd]
    if killed_for is JobStatus.TIMEOUT:
        return _Outcome(JobStatus.TIMEOUT, None, f"timed out after {timeout:g}s", stdout, stderr)
    if killed_for is JobStatus.CANCELLED:
        return _Outcome(JobStatus.CANCELLED, None, "cancelled", stdout, stderr)
    if returncode == 0:
        return _Outcome(JobStatus.SUCCESS, 0, None, stdout, stderr)
    if returncode < 0:  # killed by a signal nobody here sent: report it the way a shell would
        sig = -returncode
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return _Outcome(JobStatus.FAILED, 128 + sig, f"killed by {name}", stdout, stderr)
    return _Outcome(JobStatus.FAILED, returncode, None, stdout, stderr)


def _terminate(pid: int) -> float:
    _signal_group(pid, signal.SIGTERM)
    return time.monotonic() + KILL_GRACE_SECONDS


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _read_into(fd: int, buf: bytearray) -> bool:
    try:
        chunk = os.read(fd, _READ_CHUNK)
    except BlockingIOError:
        return True
    if not chunk:
        return False
    buf += chunk
    if len(buf) > 2 * OUTPUT_TAIL_BYTES:
        del buf[: len(buf) - OUTPUT_TAIL_BYTES]
    return True


def _drain(sel: selectors.BaseSelector, buffers: dict[int, bytearray], pidfd: int, cancel) -> None:
    """Read what is left in the pipes, bounded: a straggler that survived SIGTERM may hold them open."""
    for fd in (pidfd, cancel.fileno() if cancel is not None else None):
        if fd is not None and fd in sel.get_map():
            sel.unregister(fd)
    deadline = time.monotonic() + DRAIN_SECONDS
    while sel.get_map():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        for key, _ in sel.select(remaining):
            if not _read_into(key.fd, buffers[key.fd]):
                sel.unregister(key.fd)


def _decode(buf: bytearray) -> str:
    return bytes(buf[-OUTPUT_TAIL_BYTES:]).decode("utf-8", errors="replace")
