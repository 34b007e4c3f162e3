"""What the web view's buttons do: each action's preview (a dry run) and the action itself, through
the same library functions as the CLI (the run's lock, the change check, the audit record with the
signed-in user's name).

A resume is an ``executioner resume`` process of its own, started in its own session like the
scheduler's runs: the web server is not the run's coordinator, so restarting it never interrupts a
pipeline. The request waits until that process has either started the attempt (its row exists) or
stopped (a refusal: its one-line reason is shown), so the user sees the outcome, not a guess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from orchestrator import manual
from orchestrator.cancelling import cancel_run
from orchestrator.context import Context
from orchestrator.db.engine import read_tx
from orchestrator.db.queries import get_run
from orchestrator.db.schema import attempts
from orchestrator.errors import RefusedError, UserError
from orchestrator.launch import ResumeRequest, resume_run
from orchestrator.locks.base import LockOwner
from orchestrator.scheduler import settings_env
from workers.statuses import AttemptStatus, JobStatus

ACTIONS = ("resume", "resume-failed", "mark-success", "rollback", "cancel")
START_WAIT = 30.0  # seconds a resume request waits for its attempt to start (or be refused)


@dataclass(frozen=True, slots=True)
class ActionRequest:
    run_id: int
    action: str  # one of ACTIONS
    jobs: tuple[str, ...] = ()  # mark-success: the jobs; rollback: the one job
    with_upstream: bool = False

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise UserError(f"unknown action {self.action!r} (one of {', '.join(ACTIONS)})")
        if self.action in ("mark-success", "rollback") and not self.jobs:
            raise UserError(f"{self.action}: choose a job")
        if self.action == "rollback" and len(self.jobs) != 1:
            raise UserError("rollback: choose exactly one job (its descendants follow)")


def web_owner(what: str, user: str) -> LockOwner:
    """The actor recorded for the web view's actions: ``web:<user>@<server host>``."""
    return LockOwner(what, user=f"web:{user}")


def preview(ctx: Context, request: ActionRequest) -> dict[str, Any]:
    """What the action would do, read-only (no lock, nothing written): shown before confirming."""
    r = request
    if r.action in ("resume", "resume-failed"):
        dry = resume_run(ctx, ResumeRequest(r.run_id, failed_only=r.action == "resume-failed", dry_run=True))
        return {"action": r.action, "plan": dry.as_dict()}
    if r.action == "mark-success":
        result = manual.mark_success(ctx, r.run_id, list(r.jobs), with_upstream=r.with_upstream, dry_run=True)
        return {"action": r.action, "manual": result.as_dict()}
    if r.action == "rollback":
        return {
            "action": r.action,
            "manual": manual.rollback(ctx, r.run_id, r.jobs[0], dry_run=True).as_dict(),
        }
    from orchestrator.inspection import run_status

    status = run_status(ctx, r.run_id)
    running = [j for j, s in status["jobs"].items() if s["status"] in (JobStatus.RUNNING, JobStatus.QUEUED)]
    if status["attempts"] and status["attempts"][-1]["status"] != AttemptStatus.RUNNING:
        raise UserError(f"run {r.run_id} is not running; nothing to cancel")
    return {
        "action": r.action,
        "cancel": {"attempt_id": status["attempts"][-1]["attempt_id"], "stops": running},
    }


def perform(ctx: Context, request: ActionRequest, user: str) -> dict[str, Any]:
    r = request
    if r.action in ("resume", "resume-failed"):
        return launch_resume(ctx, r.run_id, user, failed_only=r.action == "resume-failed")
    if r.action == "mark-success":
        owner = web_owner("mark-success", user)
        result = manual.mark_success(ctx, r.run_id, list(r.jobs), with_upstream=r.with_upstream, owner=owner)
        return {"action": r.action, "manual": result.as_dict()}
    if r.action == "rollback":
        result = manual.rollback(ctx, r.run_id, r.jobs[0], owner=web_owner("rollback", user))
        return {"action": r.action, "manual": result.as_dict()}
    result = cancel_run(ctx, r.run_id, owner=web_owner("cancel", user))
    return {"action": r.action, "cancel": result.as_dict()}


def launch_resume(ctx: Context, run_id: int, user: str, *, failed_only: bool) -> dict[str, Any]:
    """Start ``executioner resume RUN_ID`` and wait until its attempt exists or it has stopped."""
    with read_tx(ctx.engine) as conn:
        get_run(conn, run_id)  # unknown run: refused here
        before = _last_attempt(conn, run_id)
    what = "resume --failed-only" if failed_only else "resume"
    argv = [sys.executable, "-m", "orchestrator.cli", "resume", str(run_id), "--triggered-by", "web"]
    argv += ["--trigger-reason", f"{what} from the web view by {user}"[:500], "--as-user", f"web:{user}"]
    argv += ["--failed-only"] if failed_only else []
    log_path = _log_path(ctx, run_id)
    with open(log_path, "ab", buffering=0) as log:
        os.chmod(log_path, 0o600)  # the coordinator's output: as private as the history
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **settings_env(ctx)},
            start_new_session=True,  # a web server restart never interrupts the run
        )
    threading.Thread(target=proc.wait, name=f"reap-resume-{run_id}", daemon=True).start()
    deadline = time.monotonic() + START_WAIT
    delay = 0.05
    while time.monotonic() < deadline:
        with read_tx(ctx.engine) as conn:
            now = _last_attempt(conn, run_id)
        if now is not None and now != before:
            return {"action": "resume", "run_id": run_id, "attempt_id": now, "log": str(log_path)}
        code = proc.poll()
        if code is not None:
            if code == 0:  # nothing to do: every selected job is effectively SUCCESS
                return {"action": "resume", "run_id": run_id, "attempt_id": None, "log": str(log_path)}
            raise RefusedError(f"resume of run {run_id} stopped (exit {code}): {_reason(log_path)}")
        time.sleep(delay)  # a poll with a deadline: another process writes the row we wait for
        delay = min(delay * 2, 0.5)
    return {"action": "resume", "run_id": run_id, "attempt_id": None, "log": str(log_path), "starting": True}


def _last_attempt(conn, run_id: int) -> int | None:
    return conn.execute(
        select(attempts.c.attempt_id)
        .where(attempts.c.run_id == run_id)
        .order_by(attempts.c.attempt_id.desc())
        .limit(1)
    ).scalar()


def _log_path(ctx: Context, run_id: int) -> Path:
    folder = ctx.settings.home / "web"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder / f"resume-run{run_id}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"


def _reason(log_path: Path) -> str:
    """The resume's own one-line refusal (``executioner: ...``), as the CLI printed it."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return "see the server's log"
    said = [line.removeprefix("executioner: ") for line in lines if line.startswith("executioner: ")]
    return "; ".join(said[-3:]) or (lines[-1] if lines else "no output")
