"""The local pool's journal: every event of every job, on disk before the coordinator hears of it.

The local executor's jobs run in a pool process (``workers.pool``) that outlives its coordinator. It
writes each dispatch's events to a file of its own, then tells the coordinator; the coordinator
deletes the file once the events are committed to the history. A coordinator that dies (SIGKILL,
a long pause, a database outage it gave up on) leaves the files of what it had not recorded: the
next ``resume`` records them, real exit codes included, and re-runs nothing that finished.

Layout, under ``<home>/journal/<scope>/``::

    run-<R>.epoch                    the run's fencing token, published by whoever holds the run
    run-<R>/a<A>/pool.lock           flock held by the attempt's pool while it lives
    run-<R>/a<A>/<job>.<try>.jsonl   one line per event (``workers.wire``) of one dispatch

Writes survive the death of any process (they are in the kernel's page cache once ``write``
returns); they are not fsync'ed per job, so a power cut may lose the last seconds of them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".jsonl"


@dataclass(frozen=True)
class Journal:
    root: Path

    def run_dir(self, run_id: int) -> Path:
        return self.root / f"run-{run_id}"

    def attempt_dir(self, run_id: int, attempt_id: int) -> Path:
        return self.run_dir(run_id) / f"a{attempt_id}"

    def dispatch_file(self, run_id: int, attempt_id: int, job_id: str, first_try: int) -> Path:
        return Path(dispatch_path(str(self.attempt_dir(run_id, attempt_id)), job_id, first_try))

    def lock_file(self, run_id: int, attempt_id: int) -> Path:
        return self.attempt_dir(run_id, attempt_id) / "pool.lock"

    def epoch_file(self, run_id: int) -> Path:
        return self.root / f"run-{run_id}.epoch"

    def prepare(self, run_id: int, attempt_id: int) -> Path:
        path = self.attempt_dir(run_id, attempt_id)
        _private_dirs(path)
        return path

    def publish_epoch(self, run_id: int, epoch: int) -> None:
        """Tell pools of older holders to start nothing more (atomic replace)."""
        _private_dirs(self.root)
        tmp = self.epoch_file(run_id).with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(str(epoch))
        tmp.replace(self.epoch_file(run_id))

    def read_epoch(self, run_id: int) -> int:
        try:
            return int(self.epoch_file(run_id).read_text() or 0)
        except (OSError, ValueError):
            return 0

    def pool_alive(self, run_id: int, attempt_id: int) -> bool | None:
        """True while the attempt's pool holds its lock; None if it never had one here."""
        try:
            fd = os.open(self.lock_file(run_id, attempt_id), os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def dispatch_files(self, run_id: int, attempt_id: int) -> list[Path]:
        folder = self.attempt_dir(run_id, attempt_id)
        try:
            return sorted(p for p in folder.iterdir() if p.name.endswith(SUFFIX))
        except FileNotFoundError:
            return []

    def remove_attempt(self, run_id: int, attempt_id: int) -> None:
        """Once everything the attempt's pool wrote is in the history."""
        folder = self.attempt_dir(run_id, attempt_id)
        for path in self.dispatch_files(run_id, attempt_id):
            path.unlink(missing_ok=True)
        self.lock_file(run_id, attempt_id).unlink(missing_ok=True)
        (folder / "pool.log").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            folder.rmdir()
        with contextlib.suppress(OSError):
            self.run_dir(run_id).rmdir()


def dispatch_path(folder: str, job_id: str, first_try: int) -> str:
    """The file of one dispatch in an attempt's folder (a plain string: built once per job on a hot
    path). Job ids are [A-Za-z0-9_.-]{1,200}: safe as a file name once a suffix follows."""
    return f"{folder}/{job_id}.{first_try}{SUFFIX}"


def _private_dirs(path: Path) -> None:
    """``path`` and its missing parents, each readable by its owner only (results are job output)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)


def read_lines(path: Path) -> list[bytes]:
    """Complete lines of a journal file (a torn last line, cut by a crash mid-write, is left out)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    return [line for line in lines[:-1] if line]  # the last element follows the last newline
