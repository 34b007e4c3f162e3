"""The local pool's journal: every event of every job, on disk before the coordinator hears of it.

The local executor's jobs run in a pool process (``workers.pool``) that outlives its coordinator. It
appends each event to its attempt's journal, then tells the coordinator. A coordinator that dies
(SIGKILL, a long pause, a database outage it gave up on) leaves the journal of what it had not
recorded: the next ``resume`` records it (idempotently: what is already in the history is skipped),
real exit codes included, and re-runs nothing that finished.

Layout, under ``<home>/journal/<scope>/``::

    run-<R>.epoch                    the run's fencing token, published by whoever holds the run
    run-<R>/a<A>/pool.lock           flock held by the attempt's pool while it lives
    run-<R>/a<A>/events@<S>.jsonl    segment S: one line per event (``workers.wire``) of the
                                     dispatches the coordinator numbered S (a thousand each)

Segments rather than a file per dispatch: creating and deleting an inode per job cost more than
anything else the pool did for a short job. Segments rather than one file: a job's result carries
the tail of its output (up to 64 KiB a stream), so the coordinator deletes each segment as soon as
all its dispatches are in the history, and the journal stays as small as what is not yet recorded.
All the events of one dispatch are in its segment. Besides the wire's events (``started``, ``try``,
``ended``) the journal has two kinds of its own: ``taken`` (the pool is about to start a dispatch:
written *before* it checks the fence, so a recovery that published a newer epoch and then reads
the journal sees every dispatch that may start) and ``dropped`` (fenced: it never started).

Writes survive the death of any process (they are in the kernel's page cache once ``write``
returns); they are not fsync'ed per job, so a power cut may lose the last seconds of them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from workers.wire import EVENT_KINDS

SEGMENT_DISPATCHES = 1000  # dispatches per journal segment
MAX_SEGMENT = 10**18 - 1  # a segment number is at most 18 digits (the pool refuses larger ones)
_SEGMENT = re.compile(r"events@(\d{1,18})\.jsonl")
TAKEN, DROPPED = "taken", "dropped"
JOURNAL_KINDS = (*EVENT_KINDS, TAKEN, DROPPED)


@dataclass(frozen=True)
class Journal:
    root: Path

    def run_dir(self, run_id: int) -> Path:
        return self.root / f"run-{run_id}"

    def attempt_dir(self, run_id: int, attempt_id: int) -> Path:
        return self.run_dir(run_id) / f"a{attempt_id}"

    def segment_file(self, run_id: int, attempt_id: int, segment: int) -> Path:
        # "@" is no job id's character: never the name of a file a pool before segments wrote.
        return self.attempt_dir(run_id, attempt_id) / f"events@{segment}.jsonl"

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

    def files(self, run_id: int, attempt_id: int) -> list[Path]:
        """Every journal file of the attempt, in reading order: files a pool before 2026-11-29 wrote
        (``<job>.<try>.jsonl``, one per dispatch: a run one left is still resumed after an upgrade),
        then the segments by number."""
        try:
            names = [p.name for p in self.attempt_dir(run_id, attempt_id).iterdir()]
        except FileNotFoundError:
            return []
        segments = sorted(int(m.group(1)) for n in names if (m := _SEGMENT.fullmatch(n)))
        legacy = sorted(n for n in names if n.endswith(".jsonl") and not _SEGMENT.fullmatch(n))
        folder = self.attempt_dir(run_id, attempt_id)
        return [folder / n for n in legacy] + [self.segment_file(run_id, attempt_id, s) for s in segments]

    def remove_attempt(self, run_id: int, attempt_id: int) -> None:
        """Once everything the attempt's pool wrote is in the history."""
        folder = self.attempt_dir(run_id, attempt_id)
        for path in self.files(run_id, attempt_id):
            path.unlink(missing_ok=True)
        self.lock_file(run_id, attempt_id).unlink(missing_ok=True)
        (folder / "pool.log").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            folder.rmdir()
        with contextlib.suppress(OSError):
            self.run_dir(run_id).rmdir()


class JournalWriter:
    """Appends whole lines to an attempt's journal segments from any of the pool's threads.

    A segment's file is open while a dispatch of it is in the pool (between ``taken`` and its
    ``ended`` or ``dropped``), so the coordinator's deletion of a recorded segment frees its space.
    """

    def __init__(self, journal: Journal, run_id: int, attempt_id: int) -> None:
        self._path = lambda segment: journal.segment_file(run_id, attempt_id, segment)
        self._open: dict[int, list[int]] = {}  # segment -> [fd, its dispatches in the pool]
        # Its own lock, not the pipe's: a coordinator that stops reading (paused) must not keep
        # results from reaching the disk, where a recovery finds them.
        self._lock = threading.Lock()

    def append(self, segment: int, data: bytes, *, taken: bool = False, done: bool = False) -> None:
        """``taken``: a dispatch of ``segment`` begins with this line; ``done``: one ends with it."""
        with self._lock:  # one line at a time: a short write (disk full) must not interleave
            entry = self._open.get(segment)
            if entry is None:
                fd = os.open(
                    self._path(segment), os.O_CREAT | os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC, 0o600
                )
                entry = self._open[segment] = [fd, 0]
            entry[1] += taken - done
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(entry[0], view) :]
            finally:
                if entry[1] <= 0:
                    os.close(entry[0])
                    del self._open[segment]

    def close(self) -> None:
        with self._lock:
            for fd, _ in self._open.values():
                os.close(fd)
            self._open.clear()


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
