"""Leaving nothing behind: the processes a job left when its main process ended, found and killed.

A job's process group catches most of what it starts, but not a daemon that double-forks and calls
``setsid``, nor a child that ignores SIGTERM. The process that runs jobs (the local pool, a Celery
worker process) therefore makes itself a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``): every
orphan of a job is re-parented to it instead of to init, so its direct children are a short list to
look through. An orphan is attributed to a try by its environment (``EXECUTIONER_RUN_ID``,
``_ATTEMPT_ID``, ``_JOB_ID``, ``_TRY``), never by pid alone: pids are reused.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


class Reaper:
    """Per process: which children are job leaders (their exit codes belong to ``subprocess``)."""

    def __init__(self) -> None:
        self._leaders: set[int] = set()
        self._lock = threading.Lock()
        self.enabled = _become_subreaper()

    @contextlib.contextmanager
    def spawning(self):
        """Start a job leader inside this block and ``add`` it: a scan never sees it unregistered
        (reaping a leader's zombie would steal its exit code from ``subprocess``).

        Only the main thread's children are scanned (``_children``): a leader another thread
        forks is that thread's child and never listed (its thread waits for it before it can end,
        so it is never handed to the main thread alive), so it needs neither the lock nor a place
        in the set — and jobs started by the pool's threads then fork side by side."""
        if threading.current_thread() is not threading.main_thread():
            yield _unlisted
            return
        with self._lock:
            yield self._leaders.add

    def leader_waited(self, pid: int) -> None:
        if pid in self._leaders:  # only the thread that added it discards it
            with self._lock:
                self._leaders.discard(pid)

    def leftovers(self, marks: set[bytes]) -> list[int]:
        """Our children (re-parented orphans) that carry this try's marks; zombies are reaped."""
        if not self.enabled:
            return []
        found = []
        with self._lock:
            for pid in _children():
                if pid in self._leaders:
                    continue
                if is_zombie(pid):
                    _reap(pid)  # an orphan that already ended: collect it, nobody else will
                elif marks <= environment(pid):
                    found.append(pid)
        return found

    def kill(self, marks: set[bytes], grace: float) -> int:
        """SIGTERM this try's leftovers, SIGKILL what survives ``grace``; repeat for the orphans they
        leave in turn. Returns how many processes were found."""
        total = 0
        for _ in range(8):  # each round re-parents the next generation to us
            pids = self.leftovers(marks)
            if not pids:
                break
            total += len(pids)
            _signal_all(pids, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and any(_alive(p) for p in pids):
                time.sleep(0.02)
            _signal_all(pids, signal.SIGKILL)
            for pid in pids:
                _reap(pid, block=True)
        return total


def _unlisted(pid: int) -> None:
    """A leader forked outside the main thread: never among the scanned children."""


def marks(run_id: int, attempt_id: int, job_id: str, try_number: int) -> set[bytes]:
    return {
        f"EXECUTIONER_RUN_ID={run_id}".encode(),
        f"EXECUTIONER_ATTEMPT_ID={attempt_id}".encode(),
        f"EXECUTIONER_JOB_ID={job_id}".encode(),
        f"EXECUTIONER_TRY={try_number}".encode(),
    }


def _become_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _children() -> list[int]:
    # The kernel re-parents an orphan to the subreaper's first live thread: the main one. (Job
    # leaders forked by other threads are listed under those threads: not read here at all.)
    pid = os.getpid()
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def environment(pid: int) -> set[bytes]:
    """The ``NAME=value`` entries of a process's environment (empty if it is gone or not ours)."""
    try:
        return set(Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"))
    except OSError:
        return set()


def is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and not is_zombie(pid)


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _reap(pid: int, block: bool = False) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, 0 if block else os.WNOHANG)
