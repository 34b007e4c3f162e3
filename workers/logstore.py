"""Where every try's complete stdout and stderr go: a log store (abstract base, two stores, a stub).

The history keeps the last 64 KiB of each stream; the store keeps all of it, secrets masked:

* ``DirectoryLogStore`` (the default): files under ``$EXECUTIONER_HOME/logs`` of the machine that ran
  the job, written as the job writes (``executioner logs --follow`` reads them live there);
* ``FsspecLogStore``: any fsspec URL in ``EXECUTIONER_LOG_STORE`` (``s3://bucket/prefix`` with s3fs, a
  shared ``file://`` mount ...), so ``executioner logs`` on another machine reads them. A try is
  spooled to a local file and uploaded when it ends;
* ``NullLogStore``: keeps nothing (tests, or ``EXECUTIONER_LOG_STORE=none``).

A try's logs live at ``<scope>/run-<R>/a<A>/<job>/try-<N>.out|.err`` under the store's root; the
try's record carries the URI of that pair (``uri + ".out"``/``".err"``) and the byte counts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

STREAMS = ("out", "err")


def try_key(scope: str, run_id: int, attempt_id: int, job_id: str, try_number: int) -> str:
    return f"{scope or 'default'}/run-{run_id}/a{attempt_id}/{job_id}/try-{try_number}"


def run_key(scope: str, run_id: int) -> str:
    return f"{scope or 'default'}/run-{run_id}"


class TryLog:
    """The files of one try being written; ``write`` takes stream 0 (stdout) or 1 (stderr).

    A stream's file is created with its first byte: creating a file costs about a millisecond on
    some disks, and most tries of many jobs print nothing. A stream that stayed empty has no file
    (its size, 0, is in the try's record)."""

    def __init__(self, paths: tuple[Path, Path], masker: Masker | None = None) -> None:
        self.paths = paths
        self.files: list[Any] = [None, None]
        self.sizes = [0, 0]
        self.failed = False
        self.maskers = [masker, masker.copy()] if masker is not None else [None, None]

    def write(self, stream: int, data: bytes) -> None:
        try:
            f = self.files[stream]
            if f is None:
                path = self.paths[stream]
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                # Unbuffered: one write per chunk read from the pipe, seen at once by `logs --follow`.
                f = self.files[stream] = open(path, "wb", buffering=0)  # noqa: SIM115 - closed in close()
            masker = self.maskers[stream]
            f.write(masker.feed(data) if masker is not None else data)
        except OSError:
            self.failed = True  # the store cannot take it: the try keeps no (partial) full log
            raise
        self.sizes[stream] += len(data)

    @property
    def empty(self) -> bool:
        """Nothing kept: no output, or the store failed (the history's tail is what there is)."""
        return self.failed or not any(self.sizes)

    def close(self) -> None:
        for stream, f in enumerate(self.files):
            if f is None:
                continue
            masker = self.maskers[stream]
            with contextlib.suppress(OSError):
                if masker is not None:
                    f.write(masker.finish())
                f.close()


class LogStore(ABC):
    """Writers are opened by the runner (workers), readers by ``executioner logs`` (anywhere)."""

    @abstractmethod
    def open_try(self, key: str, masker: Masker | None = None) -> TryLog: ...

    @abstractmethod
    def finish(self, key: str, log: TryLog) -> str | None:
        """Close the try's files; return the URI its record carries (None: nothing kept)."""

    @abstractmethod
    def read(self, uri: str, stream: str) -> bytes | None:
        """A stream of a try by its URI; None when it cannot be reached from here."""

    @abstractmethod
    def local_path(self, key: str, stream: str) -> Path | None:
        """Where a try running on this machine writes ``stream`` now (``logs --follow``)."""

    @abstractmethod
    def remove_run(self, scope: str, run_id: int) -> int:
        """Delete every log of a run reachable from here; the bytes removed."""

    @abstractmethod
    def run_size(self, scope: str, run_id: int) -> int: ...


class DirectoryLogStore(LogStore):
    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.abspath(root))  # absolute once: no resolving per try

    def _base(self, key: str) -> Path:
        return self.root / key

    def open_try(self, key: str, masker: Masker | None = None) -> TryLog:
        base = self._base(key)
        return TryLog((base.with_name(base.name + ".out"), base.with_name(base.name + ".err")), masker)

    def finish(self, key: str, log: TryLog) -> str | None:
        log.close()
        return None if log.empty else self._base(key).as_uri()  # no output: the history has it all

    def read(self, uri: str, stream: str) -> bytes | None:
        path = _file_path(uri)
        if path is None:
            return None
        try:
            return Path(f"{path}.{stream}").read_bytes()
        except OSError:
            return None

    def local_path(self, key: str, stream: str) -> Path | None:
        base = self._base(key)
        return base.with_name(f"{base.name}.{stream}")

    def remove_run(self, scope: str, run_id: int) -> int:
        size = self.run_size(scope, run_id)
        shutil.rmtree(self.root / run_key(scope, run_id), ignore_errors=True)
        return size

    def run_size(self, scope: str, run_id: int) -> int:
        folder = self.root / run_key(scope, run_id)
        return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


class FsspecLogStore(LogStore):
    """Any fsspec filesystem; each try is spooled locally (so a slow store never slows the job's
    pipes) and uploaded when it ends."""

    def __init__(self, url: str, spool: Path) -> None:
        import fsspec

        self.url = url.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.spool = Path(spool)

    def open_try(self, key: str, masker: Masker | None = None) -> TryLog:
        self.spool.mkdir(parents=True, exist_ok=True, mode=0o700)
        folder = Path(tempfile.mkdtemp(dir=self.spool))
        return TryLog((folder / "try.out", folder / "try.err"), masker)

    def finish(self, key: str, log: TryLog) -> str | None:
        log.close()
        if log.empty:
            shutil.rmtree(log.paths[0].parent, ignore_errors=True)
            return None
        target = f"{self.root}/{key}"
        try:
            self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)  # object stores: nothing to do
            for path, stream in zip(log.paths, STREAMS, strict=True):
                if path.exists():
                    self.fs.put_file(str(path), f"{target}.{stream}")
        except Exception:  # the store is away: the tail in the history is what is left
            return None
        finally:
            shutil.rmtree(log.paths[0].parent, ignore_errors=True)
        return f"{self.url}/{key}"

    def read(self, uri: str, stream: str) -> bytes | None:
        try:
            import fsspec

            with fsspec.open(f"{uri}.{stream}", "rb") as f:
                return f.read()
        except Exception:
            return None

    def local_path(self, key: str, stream: str) -> Path | None:
        return None  # spooled under a temporary name: follow goes through Redis

    def remove_run(self, scope: str, run_id: int) -> int:
        size = self.run_size(scope, run_id)
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(f"{self.root}/{run_key(scope, run_id)}", recursive=True)
        return size

    def run_size(self, scope: str, run_id: int) -> int:
        try:
            return int(self.fs.du(f"{self.root}/{run_key(scope, run_id)}"))
        except (FileNotFoundError, OSError):
            return 0


class NullLogStore(LogStore):
    def open_try(self, key: str, masker: Masker | None = None) -> TryLog:
        return _Discard()

    def finish(self, key: str, log: TryLog) -> str | None:
        log.close()
        return None

    def read(self, uri: str, stream: str) -> bytes | None:
        return None

    def local_path(self, key: str, stream: str) -> Path | None:
        return None

    def remove_run(self, scope: str, run_id: int) -> int:
        return 0

    def run_size(self, scope: str, run_id: int) -> int:
        return 0


class _Discard(TryLog):
    def __init__(self) -> None:
        super().__init__((Path(os.devnull), Path(os.devnull)))

    def write(self, stream: int, data: bytes) -> None:
        self.sizes[stream] += len(data)


def log_store(url: str | None, home: Path) -> LogStore:
    """The store ``EXECUTIONER_LOG_STORE`` names: unset, a path or ``file://`` → a directory;
    ``none`` → nothing kept; any other URL → fsspec."""
    if not url:
        return DirectoryLogStore(Path(home) / "logs")
    if url == "none":
        return NullLogStore()
    path = _file_path(url) if url.startswith("file://") else (Path(url) if "://" not in url else None)
    if path is not None:
        return DirectoryLogStore(path)
    return FsspecLogStore(url, Path(home) / "log-spool")


def read_log(uri: str, stream: str) -> bytes | None:
    """A try's stream by the URI its record carries, from wherever this machine can reach it."""
    if uri.startswith("file://"):
        return DirectoryLogStore(Path("/")).read(uri, stream)
    try:
        import fsspec

        with fsspec.open(f"{uri}.{stream}", "rb") as f:
            return f.read()
    except Exception:  # not installed, not reachable, gone: the tail in the history remains
        return None


def _file_path(uri: str) -> Path | None:
    if not uri.startswith("file://"):
        return None
    from urllib.parse import unquote, urlparse

    return Path(unquote(urlparse(uri).path))


class Masker:
    """Masks secret values in a stream written in chunks: a secret split across two chunks is
    still masked (the end of each chunk that could begin one is held back until the next)."""

    def __init__(self, secrets: list[bytes]) -> None:
        from workers.secrets import MASK

        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self.hold = max((len(s) for s in self.secrets), default=1) - 1
        self.mask = MASK.encode()
        self.carry = b""

    def copy(self) -> Masker:
        return Masker(self.secrets)

    def feed(self, data: bytes) -> bytes:
        data = self.carry + data
        cut = max(0, len(data) - self.hold)
        moved = True
        while moved:  # never cut through an occurrence: an occurrence that would is held back whole
            moved = False
            for secret in self.secrets:
                start = data.find(secret, max(0, cut - len(secret) + 1))
                if 0 <= start < cut:
                    cut, moved = start, True
        self.carry = data[cut:]
        return self._masked(data[:cut])

    def finish(self) -> bytes:
        out, self.carry = self._masked(self.carry), b""
        return out

    def _masked(self, data: bytes) -> bytes:
        for secret in self.secrets:
            data = data.replace(secret, self.mask)
        return data
