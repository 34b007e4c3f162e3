"""``executioner logs``: each try's whole output from the log store, or followed while it runs.

The complete stdout/stderr of a try are in the log store its worker wrote to (``workers.logstore``);
its record in the history carries their URI. Where that store cannot be reached from this machine
(another machine's local directory), the 64 KiB tail kept in the history is shown, marked.
``--follow`` prints tries as they end and, for a try running on this machine (the local executor),
its output as it is written, until the job ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select

from orchestrator.context import Context
from orchestrator.db.engine import read_tx
from orchestrator.db.queries import load_run, try_rows
from orchestrator.db.schema import attempts, job_runs
from orchestrator.errors import UnknownJobError, UserError
from orchestrator.stored import stored_workflow
from workers.logstore import read_log, try_key
from workers.statuses import JobStatus

LIVE = (JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RUNNING)


@dataclass(slots=True)
class TryOutput:
    attempt_id: int
    try_number: int
    status: str
    exit_code: int | None
    worker: str
    error: str | None
    stdout: str
    stderr: str
    complete: bool  # False: only the tail the history keeps (the store is not reachable from here)
    log_uri: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "attempt_id": self.attempt_id,
            "try": self.try_number,
            "status": self.status,
            "exit_code": self.exit_code,
            "worker": self.worker,
            "error": self.error,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "complete": self.complete,
            "log_uri": self.log_uri,
        }


def job_logs(
    ctx: Context, run_id: int, job_id: str, attempt_id: int | None = None, try_number: int | None = None
) -> dict[str, Any]:
    """Every ended try of ``job_id`` in ``attempt_id`` (default: the latest attempt that ran it)."""
    with read_tx(ctx.engine) as conn:
        record = load_run(conn, run_id)
        known = record.last_snapshot is not None and job_id in stored_workflow(record).jobs
        if not known and not _has_rows(conn, run_id, job_id):
            raise UnknownJobError(run_id, [job_id])
        attempt_id = attempt_id or _latest_attempt(conn, run_id, job_id)
        rows = try_rows(conn, run_id, job_id, attempt_id) if attempt_id else []
        status = _job_status(conn, run_id, job_id, attempt_id) if attempt_id else None
    if try_number is not None:
        rows = [r for r in rows if r.try_number == try_number]
        if not rows:
            raise UserError(
                f"run {run_id} job {job_id!r}: attempt {attempt_id} has no ended try {try_number}"
            )
    return {
        "run_id": run_id,
        "job_id": job_id,
        "attempt_id": attempt_id,
        "status": str(status or record.state[job_id].status),
        "tries": [output(r) for r in rows],
    }


def output(row: Any) -> TryOutput:
    sizes = {"out": row.stdout_bytes, "err": row.stderr_bytes}
    tails = {"out": row.stdout_tail or "", "err": row.stderr_tail or ""}
    text: dict[str, str] = {}
    for stream, size in sizes.items():
        if size is not None and size <= len(tails[stream].encode()) and not tails[stream].startswith("[… "):
            text[stream] = tails[stream]  # the history holds all of it (an empty stream has no file)
            continue
        full = read_log(row.log_uri, stream) if row.log_uri else None
        if full is not None:
            text[stream] = full.decode("utf-8", errors="replace")
    complete = len(text) == 2
    if not complete:
        text = tails
    return TryOutput(
        row.attempt_id,
        row.try_number,
        row.status,
        row.exit_code,
        row.worker,
        row.error,
        text["out"],
        text["err"],
        complete,
        row.log_uri,
    )


def follow(
    ctx: Context,
    run_id: int,
    job_id: str,
    attempt_id: int | None,
    emit: Callable[[str, str], None],
    *,
    poll: float = 0.2,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Print the job's tries as they end, and a try running here as it writes; return the job's
    final status. ``emit(kind, text)``: kind is "out", "err" or "note"."""
    store = ctx.settings.worker.make_log_store()
    scope = ctx.scope
    shown: set[int] = set()
    live_try, offsets = 0, {"out": 0, "err": 0}
    note_at = clock()
    remote: _RedisFollow | None = None
    while True:
        with read_tx(ctx.engine) as conn:
            load_run(conn, run_id)  # unknown run: exit 2
            attempt = attempt_id or _latest_attempt(conn, run_id, job_id)
            status = _job_status(conn, run_id, job_id, attempt) if attempt else None
            rows = try_rows(conn, run_id, job_id, attempt) if attempt else []
            executor = _executor(conn, run_id, attempt) if attempt else None
        live_now = status is not None and JobStatus(status) in LIVE
        if executor == "celery" and remote is None and live_now and ctx.settings.broker_url:
            remote = _RedisFollow(ctx, run_id, attempt, job_id)  # its worker publishes while we read
        for row in rows:
            if row.try_number in shown:
                continue
            shown.add(row.try_number)
            if row.try_number == live_try and remote is not None:  # what its worker published last
                remote.pump(live_try, emit, 0.05)
                if not remote.emitted.get(live_try):
                    # The worker had not noticed us yet (it asks once a second) when the try ended:
                    # nothing of it came live, so all of it now, from the store or the history's tail.
                    out = output(row)
                    emit("out", out.stdout)
                    emit("err", out.stderr)
            elif row.try_number == live_try:  # streamed as it ran: what is left of it
                for stream in ("out", "err"):
                    path = store.local_path(try_key(scope, run_id, attempt, job_id, live_try), stream)
                    offsets[stream] = _stream(path, offsets[stream], stream, emit)
            else:
                out = output(row)
                emit("note", f"=== attempt {row.attempt_id} try {row.try_number}: {row.status}")
                emit("out", out.stdout)
                emit("err", out.stderr)
        if status is not None and JobStatus(status) not in LIVE:
            if remote is not None:
                remote.close()
            return str(status)
        if status is None or JobStatus(status) is not JobStatus.RUNNING:
            if clock() >= note_at:
                emit("note", f"{status or 'PENDING'}, no output yet")
                note_at = clock() + 30
        else:
            running = len(rows) + 1 if not rows else max(r.try_number for r in rows) + 1
            if running != live_try:
                live_try, offsets = running, {"out": 0, "err": 0}
                emit("note", f"=== attempt {attempt} try {running}: RUNNING")
            if remote is not None:  # on a worker: what it publishes to Redis
                remote.pump(live_try, emit, poll)
                continue
            for stream in ("out", "err"):
                path = store.local_path(try_key(scope, run_id, attempt, job_id, live_try), stream)
                offsets[stream] = _stream(path, offsets[stream], stream, emit)
        time.sleep(poll)


class _RedisFollow:
    """Follows a try running on a Celery worker: keeps the job's follower key alive (workers publish
    only then) and reads the try's output stream from Redis."""

    def __init__(self, ctx: Context, run_id: int, attempt_id: int, job_id: str) -> None:
        from workers import keys

        self.redis = ctx.redis()
        self.keys = keys
        self.scope, self.run_id, self.attempt_id, self.job_id = ctx.scope, run_id, attempt_id, job_id
        self.follow_key = keys.follower(ctx.scope, run_id, attempt_id, job_id)
        # Announced before anything is printed: whoever sees us follow may expect output published.
        self.redis.set(self.follow_key, 1, ex=10)
        self.renewed = time.monotonic()
        self.last: dict[int, str] = {}
        self.emitted: dict[int, int] = {}  # chunks shown per try

    def pump(self, try_number: int, emit: Callable[[str, str], None], block: float) -> None:
        now = time.monotonic()
        if now - self.renewed > 3:
            self.redis.set(self.follow_key, 1, ex=10)
            self.renewed = now
        key = self.keys.output(self.scope, self.run_id, self.attempt_id, self.job_id, try_number)
        found = self.redis.xread({key: self.last.get(try_number, "0")}, block=int(block * 1000), count=100)
        for _, entries in found or []:
            for entry_id, fields in entries:
                self.last[try_number] = entry_id
                self.emitted[try_number] = self.emitted.get(try_number, 0) + 1
                stream = "err" if fields.get(b"s") == b"1" else "out"
                emit(stream, fields.get(b"d", b"").decode("utf-8", errors="replace"))

    def close(self) -> None:
        self.redis.delete(self.follow_key)
        self.redis.close()


def _executor(conn: Connection, run_id: int, attempt_id: int) -> str | None:
    return conn.execute(
        select(attempts.c.executor).where(attempts.c.run_id == run_id, attempts.c.attempt_id == attempt_id)
    ).scalar()


def _stream(path: Path | None, offset: int, stream: str, emit: Callable[[str, str], None]) -> int:
    if path is None:
        return offset
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return offset
    if data:
        emit(stream, data.decode("utf-8", errors="replace"))
    return offset + len(data)


def _has_rows(conn: Connection, run_id: int, job_id: str) -> bool:
    return (
        conn.execute(
            select(job_runs.c.job_id).where(job_runs.c.run_id == run_id, job_runs.c.job_id == job_id).limit(1)
        ).first()
        is not None
    )


def _latest_attempt(conn: Connection, run_id: int, job_id: str) -> int | None:
    """The latest attempt in which the job was planned to run (not SKIPPED)."""
    return conn.execute(
        select(func.max(job_runs.c.attempt_id)).where(
            job_runs.c.run_id == run_id, job_runs.c.job_id == job_id, job_runs.c.status != JobStatus.SKIPPED
        )
    ).scalar()


def _job_status(conn: Connection, run_id: int, job_id: str, attempt_id: int) -> str | None:
    return conn.execute(
        select(job_runs.c.status).where(
            job_runs.c.run_id == run_id, job_runs.c.job_id == job_id, job_runs.c.attempt_id == attempt_id
        )
    ).scalar()
