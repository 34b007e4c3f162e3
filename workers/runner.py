"""The job runner: the one function both executors use to run a job with its retry policy.

Each try is a subprocess in its own session (process group). The runner waits on a pidfd, the two
output pipes and a cancel eventfd in one ``select`` loop, so it notices the exit, the timeout and a
cancellation the moment they happen, without polling and without a thread per pipe.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from workers.lease_timing import KILL_GRACE_SECONDS
from workers.logstore import LogStore, Masker, TryLog, try_key
from workers.reaper import Reaper, marks
from workers.retry import decide
from workers.secrets import REF, is_ref, mask_output, secret_names, secret_patterns, secret_values
from workers.spec import OUTPUT_TAIL_BYTES, JobResult, JobTask, TryRecord
from workers.statuses import JobStatus

# poll() takes a C int of milliseconds (24.8 days at most): longer waits (a 30-day timeout) are
# taken in slices; waking once an hour costs nothing.
MAX_POLL_MS = 3600 * 1000
DRAIN_SECONDS = 0.5  # how long to keep reading pipes held open by killed stragglers
_READ_CHUNK = 65536


class CancelToken:
    """Cancels every job that shares it: wakes their select loops and their retry waits at once.

    A plain cancel ends the running try CANCELLED; a worker stopping a job it may no longer hold
    (its lease lost or about to expire) ends it ERROR with the reason, and may shorten the grace.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.status = JobStatus.CANCELLED
        self.reason = "cancelled"
        self._grace: float | None = None  # None: KILL_GRACE_SECONDS

    def fileno(self) -> int:
        return self._fd

    def cancel(
        self,
        reason: str | None = None,
        status: JobStatus = JobStatus.CANCELLED,
        grace: float | None = None,
    ) -> None:
        if not self._event.is_set():
            self.status, self.reason, self._grace = status, reason or "cancelled", grace
            self._event.set()
            os.eventfd_write(self._fd, 1)  # stays readable: every runner's select wakes

    @property
    def grace(self) -> float:
        """Between SIGTERM and SIGKILL of the jobs it stops."""
        return KILL_GRACE_SECONDS if self._grace is None else self._grace

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
    # task, record, final: the last try of this dispatch (its result follows with every try in it)
    on_try_end: Callable[[JobTask, TryRecord, bool], None] | None = None
    cancel: CancelToken | None = None
    # Finds a try's orphans that left its process group (the pool and Celery workers set one).
    reaper: Reaper | None = None
    # Names whose env values are masked in the captured output (workers.secrets).
    secret_patterns: tuple[str, ...] = field(default_factory=secret_patterns)
    worker_name: str | None = None
    jitter: Callable[[], float] = random.random
    # The environment jobs start from (default: this process's, read per job). Executors read it
    # once: decoding os.environ for every one of thousands of jobs is measurable.
    base_env: dict[bytes, bytes] | None = None  # bytes: subprocess need not encode it per job
    # Where each try's complete output goes (workers.logstore); None: only the tail is kept.
    log_store: LogStore | None = None
    # task, try, stream (0 out, 1 err), chunk: output as it comes (Celery: to a follower via Redis).
    on_output: Callable[[JobTask, int, int, bytes], None] | None = None
    # An open read-only /dev/null for the jobs' stdin (default: opened and closed for each job).
    stdin: int | None = None


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
        # Stopped (cancelled, or its lease may be gone): no further try, whatever the policy says.
        final = not decision.retry or (hooks.cancel is not None and hooks.cancel.cancelled)
        if hooks.on_try_end:
            hooks.on_try_end(task, record, final)
        if final:
            break
        delay = decision.delay
        if delay > 0 and hooks.cancel is not None and hooks.cancel.wait(delay):
            break  # cancelled while waiting to retry: the last try's outcome stands
        if delay > 0 and hooks.cancel is None:
            time.sleep(delay)
        try_number += 1
    return JobResult(task.run_id, task.attempt_id, task.job_id, tries, epoch=task.epoch)


def job_environment(task: JobTask, try_number: int, base: dict[bytes, bytes] | None = None) -> dict:
    """The job's environment, as bytes (the form the OS takes: no per-variable encoding per job).

    A ``{from_env: NAME}`` value is the secret NAME of this process's environment (never sent);
    ``ValueError`` if it is not set here.
    """
    env = dict(os.environb) if base is None else base.copy()
    for key, value in task.env.items():
        if is_ref(value):
            found = env.get(os.fsencode(value[REF]))
            if found is None:
                raise ValueError(f"env {key}: {value[REF]} is not set where the job runs")
            env[os.fsencode(key)] = found
        else:
            env[os.fsencode(key)] = os.fsencode(value)
    env[b"EXECUTIONER_RUN_ID"] = b"%d" % task.run_id
    env[b"EXECUTIONER_ATTEMPT_ID"] = b"%d" % task.attempt_id
    env[b"EXECUTIONER_JOB_ID"] = os.fsencode(task.job_id)
    env[b"EXECUTIONER_TRY"] = b"%d" % try_number
    return env


def run_try(task: JobTask, try_number: int, hooks: RunnerHooks, worker: str) -> TryRecord:
    start = time.time()

    def ended(status: JobStatus, code: int | None = None, error: str | None = None, **kw) -> TryRecord:
        return TryRecord(try_number, status, code, start, time.time(), worker, error=error, **kw)

    if hooks.cancel is not None and hooks.cancel.cancelled:
        return ended(hooks.cancel.status, error=f"{hooks.cancel.reason} before it started")
    if task.working_dir is not None and not os.path.isdir(task.working_dir):
        return ended(JobStatus.ERROR, error=f"working_dir {task.working_dir!r} does not exist")
    argv = ["/bin/sh", "-c", task.command] if isinstance(task.command, str) else list(task.command)
    try:
        env = job_environment(task, try_number, hooks.base_env)
    except ValueError as exc:
        return ended(JobStatus.ERROR, error=str(exc))
    names = secret_names(task.env, hooks.secret_patterns) if task.env else ()
    secrets = secret_values(env, names) if names else ()
    log, key = _open_log(hooks.log_store, task, try_number, secrets)
    # Plain pipes rather than subprocess.PIPE: the runner reads raw fds, no file objects needed.
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    reaper = hooks.reaper
    try:
        with reaper.spawning() if reaper is not None else contextlib.nullcontext(None) as register:
            proc = subprocess.Popen(
                argv,
                cwd=task.working_dir,
                env=env,
                stdin=subprocess.DEVNULL if hooks.stdin is None else hooks.stdin,
                stdout=out_w,
                stderr=err_w,
                start_new_session=True,  # its own process group: timeouts and cancels kill the tree
            )
            if register is not None:
                register(proc.pid)
    except (OSError, ValueError) as exc:  # ValueError: e.g. an embedded NUL the loader let through
        os.close(out_r)
        os.close(err_r)
        if log is not None:
            log.close()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return ended(JobStatus.ERROR, error=f"could not start {argv[0]!r}: {reason}")
    finally:
        os.close(out_w)
        os.close(err_w)
    if hooks.on_try_start:
        hooks.on_try_start(task, try_number, proc.pid, start)
    try:
        tee = None
        if hooks.on_output is not None:

            def tee(stream: int, chunk: bytes, _emit=hooks.on_output) -> None:
                _emit(task, try_number, stream, chunk)

        outcome = _supervise(proc, out_r, err_r, task.timeout, hooks.cancel, log, tee, secrets)
    finally:
        if reaper is not None:
            reaper.leader_waited(proc.pid)
        uri = _finish_log(hooks.log_store, key, log)
    if reaper is not None:  # orphans that left the group (setsid daemons) carry the try's marks
        stopped = hooks.cancel is not None and hooks.cancel.cancelled
        grace = hooks.cancel.grace if stopped else KILL_GRACE_SECONDS
        reaper.kill(marks(task.run_id, task.attempt_id, task.job_id, try_number), grace)
    return ended(
        outcome.status,
        outcome.exit_code,
        outcome.error,
        pid=proc.pid,
        stdout_tail=_tail(
            mask_output(outcome.stdout, secrets) if secrets else outcome.stdout, outcome.sizes[0]
        ),
        stderr_tail=_tail(
            mask_output(outcome.stderr, secrets) if secrets else outcome.stderr, outcome.sizes[1]
        ),
        log_uri=uri,
        stdout_bytes=outcome.sizes[0],
        stderr_bytes=outcome.sizes[1],
    )


def _open_log(store: LogStore | None, task: JobTask, try_number: int, secrets) -> tuple[TryLog | None, str]:
    """The try's full log, if a store is set; a store that cannot be written never fails the job
    (the tail in the history remains)."""
    if store is None:
        return None, ""
    key = try_key(task.scope, task.run_id, task.attempt_id, task.job_id, try_number)
    try:
        return store.open_try(key, Masker(list(secrets)) if secrets else None), key
    except OSError:
        return None, key


def _finish_log(store: LogStore | None, key: str, log: TryLog | None) -> str | None:
    if store is None or log is None:
        return None
    try:
        return store.finish(key, log)
    except OSError:
        return None


@dataclass(slots=True)
class _Outcome:
    status: JobStatus
    exit_code: int | None
    error: str | None
    stdout: bytearray
    stderr: bytearray
    sizes: tuple[int, int] = (0, 0)  # bytes written to each stream in all


class _Capture:
    """The output of a try: the tail of each stream, its total size, and the full log if kept."""

    __slots__ = ("buffers", "log", "maskers", "sizes", "streams", "tee")

    def __init__(self, out_fd: int, err_fd: int, log: TryLog | None, tee=None, secrets=()) -> None:
        self.buffers = {out_fd: bytearray(), err_fd: bytearray()}
        self.streams = {out_fd: 0, err_fd: 1}
        self.sizes = [0, 0]
        self.log = log
        self.tee = tee  # output as it comes, secrets masked (workers.logstore.Masker)
        self.maskers = [Masker(list(secrets)), Masker(list(secrets))] if tee is not None and secrets else None

    def __iter__(self):
        return iter(self.buffers)

    def read(self, fd: int) -> bool:
        """One read of ``fd``; False at end of file."""
        try:
            chunk = os.read(fd, _READ_CHUNK)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        stream = self.streams[fd]
        self.sizes[stream] += len(chunk)
        if self.log is not None:
            try:
                self.log.write(stream, chunk)
            except OSError:  # disk full: the job goes on, its tail is still kept
                self.log = None
        if self.tee is not None:
            try:
                self.tee(stream, self.maskers[stream].feed(chunk) if self.maskers else chunk)
            except Exception:  # a follower's channel is a courtesy: never disturb the job
                self.tee = None
        buf = self.buffers[fd]
        buf += chunk
        if len(buf) > 2 * OUTPUT_TAIL_BYTES:
            del buf[: len(buf) - OUTPUT_TAIL_BYTES]
        return True


def _supervise(
    proc: subprocess.Popen,
    out_fd: int,
    err_fd: int,
    timeout: float | None,
    cancel: CancelToken | None,
    log: TryLog | None = None,
    tee=None,
    secrets=(),
) -> _Outcome:
    """Wait for ``proc`` while keeping the tail of its output; enforce timeout and cancellation."""
    pidfd = os.pidfd_open(proc.pid)
    buffers = _Capture(out_fd, err_fd, log, tee, secrets)
    cancel_fd = cancel.fileno() if cancel is not None else -1
    # select.poll rather than the selectors module: a job's whole supervision is a few C calls.
    poller = select.poll()
    for fd in (out_fd, err_fd, pidfd, cancel_fd):
        if fd >= 0:
            poller.register(fd, select.POLLIN)
    deadline = None if timeout is None else time.monotonic() + timeout
    killed_for: JobStatus | None = None
    kill_at = None  # when to escalate SIGTERM to SIGKILL
    exited = False
    try:
        while not exited:
            now = time.monotonic()
            waits = [t - now for t in (deadline if killed_for is None else None, kill_at) if t is not None]
            wait_ms = min(MAX_POLL_MS, max(0, math.ceil(min(waits) * 1000))) if waits else None
            for fd, _ in poller.poll(wait_ms):
                if fd == pidfd:
                    exited = True
                elif fd == cancel_fd:
                    poller.unregister(fd)  # level-triggered and shared: read it once, never drain it
                    if killed_for is None:
                        killed_for, kill_at = cancel.status, _terminate(proc.pid, cancel.grace)
                elif not buffers.read(fd):
                    poller.unregister(fd)
            now = time.monotonic()
            if not exited and killed_for is None and deadline is not None and now >= deadline:
                killed_for, kill_at = JobStatus.TIMEOUT, _terminate(proc.pid, KILL_GRACE_SECONDS)
            elif not exited and kill_at is not None and now >= kill_at:
                _signal_group(proc.pid, signal.SIGKILL)
                kill_at = None
        # The leader is a zombie until waited for, so its pid (= the group id) cannot be reused yet:
        # stragglers it left in the background are killed now, a job leaves nothing behind.
        _signal_group(proc.pid, signal.SIGKILL if killed_for else signal.SIGTERM)
        closed = _drain(buffers, DRAIN_SECONDS)
        if not closed and not killed_for and not _drain(buffers, KILL_GRACE_SECONDS):
            # Something in the group still holds its output open after SIGTERM and a grace period:
            # it ignores the signal. SIGKILL (the pipes close when the last holder dies). Those
            # that closed their pipes are the reaper's (``workers.reaper``, by environment).
            _signal_group(proc.pid, signal.SIGKILL)
            _drain(buffers, DRAIN_SECONDS)
        returncode = proc.wait()
    finally:
        os.close(pidfd)
        os.close(out_fd)
        os.close(err_fd)
    out = (buffers.buffers[out_fd], buffers.buffers[err_fd], (buffers.sizes[0], buffers.sizes[1]))
    if killed_for is JobStatus.TIMEOUT:
        return _Outcome(JobStatus.TIMEOUT, None, f"timed out after {timeout:g}s", *out)
    if killed_for is not None:  # cancelled: CANCELLED, or ERROR when it stopped for its lease
        return _Outcome(killed_for, None, cancel.reason, *out)
    if returncode == 0:
        return _Outcome(JobStatus.SUCCESS, 0, None, *out)
    if returncode < 0:  # killed by a signal nobody here sent: report it the way a shell would
        sig = -returncode
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return _Outcome(JobStatus.FAILED, 128 + sig, f"killed by {name}", *out)
    return _Outcome(JobStatus.FAILED, returncode, None, *out)


def _terminate(pid: int, grace: float) -> float:
    _signal_group(pid, signal.SIGTERM)
    return time.monotonic() + grace


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _drain(buffers: _Capture, seconds: float) -> bool:
    """Read what is left in the pipes, bounded: a straggler may hold them open. True if both closed."""
    poller = select.poll()
    open_fds = set(buffers)  # one already at EOF answers at once: no need to remember which
    for fd in open_fds:
        poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + seconds
    while open_fds:
        remaining_ms = math.ceil((deadline - time.monotonic()) * 1000)
        if remaining_ms <= 0:
            return False
        for fd, _ in poller.poll(remaining_ms):
            if not buffers.read(fd):
                poller.unregister(fd)
                open_fds.discard(fd)
    return True


def _tail(buf: bytes | bytearray, total: int) -> str:
    """The last 64 KiB of a stream, marked when the stream was longer (the store has all of it)."""
    kept = bytes(buf[-OUTPUT_TAIL_BYTES:])
    text = kept.decode("utf-8", errors="replace")
    before = total - len(kept)
    return f"[… {before} bytes before]\n{text}" if before > 0 else text
