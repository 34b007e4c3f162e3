"""``executioner backfill``: one run per slot whose logical date lies in [start, end), oldest first.

Idempotent and safe to run twice at once: every slot goes through the claim the scheduler uses
(``orchestrator.slots``), so a slot never gets two runs. A slot whose run is SUCCESS is skipped; one
whose run FAILED (or was interrupted, cancelled, partial) is resumed ``--failed-only`` with
``--rerun-failed`` — same run, same parameters, same data interval — and otherwise reported. Each run
is an ``executioner run``/``resume`` process (as the scheduler starts them), at most
``max_active_runs`` at once; a stop (SIGINT) starts nothing more and cancels the running ones.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from orchestrator import slots
from orchestrator.context import Context
from orchestrator.db.engine import read_tx
from orchestrator.db.queries import latest_statuses
from orchestrator.errors import UserError
from orchestrator.intervals import Interval, backfill_intervals, parse_every
from orchestrator.loader import load_workflow
from orchestrator.params import parse_datetime
from orchestrator.run_inputs import DRY_RUN_ID, new_run_inputs, runnable
from orchestrator.scheduler import SubprocessLauncher, settings_env
from orchestrator.workflow import Workflow
from workers.statuses import AttemptStatus

TRIGGERED_BY = "backfill"
RERUNNABLE = (AttemptStatus.FAILED, AttemptStatus.INTERRUPTED, AttemptStatus.CANCELLED, AttemptStatus.PARTIAL)


class Action:
    RUN = "run"  # a new run (the slot is free, or its earlier fire failed or was skipped)
    SKIP = "skip"  # its run is SUCCESS
    RESUME = "resume"  # its run did not succeed and --rerun-failed was given
    REPORT = "report"  # its run did not succeed (or still runs, or is being started): left alone


@dataclass(slots=True)
class BackfillRequest:
    workflow_path: str
    start: str
    end: str
    every: str | None = None
    max_active_runs: int = 1
    rerun_failed: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False
    executor: str | None = None
    max_parallel: int | None = None


@dataclass(slots=True)
class SlotWork:
    interval: Interval
    ds: str
    action: str
    run_id: int | None = None
    status: str | None = None  # the run's status: before (plan), then after (when it ended)
    reason: str = ""
    exit_code: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.interval.as_dict(),
            "ds": self.ds,
            "slot": self.interval.end.isoformat(),
            "action": self.action,
            "run_id": self.run_id,
            "status": self.status,
            "reason": self.reason,
        }


@dataclass(slots=True)
class Backfill:
    workflow: Workflow
    slots: list[SlotWork]
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        ok = all(s.status == AttemptStatus.SUCCESS for s in self.slots)
        return 0 if ok else 1

    def as_dict(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for s in self.slots:
            key = s.status or s.action
            counts[key] = counts.get(key, 0) + 1
        return {
            "application_name": self.workflow.application_name,
            "slots": [s.as_dict() for s in self.slots],
            "counts": counts,
            "interrupted": self.interrupted,
        }


def plan_backfill(ctx: Context, request: BackfillRequest) -> Backfill:
    """What a backfill would do with each slot (read-only: a dry run stops here)."""
    workflow = load_workflow(request.workflow_path)
    tz = ZoneInfo(workflow.schedule.timezone if workflow.schedule else "UTC")
    start, end = (_when(request.start, tz, "--start"), _when(request.end, tz, "--end"))
    if end <= start:
        raise UserError(f"--end {request.end} must be after --start {request.start}")
    if request.every and workflow.schedule:
        raise UserError(
            f"{request.workflow_path}: has a schedule ({workflow.schedule.cron}); its slots are the "
            "backfill's — --every is for workflows without one"
        )
    if not request.every and not workflow.schedule:
        raise UserError(f"{request.workflow_path}: has no schedule; give the step with --every (e.g. 1d)")
    try:
        every = parse_every(request.every) if request.every else None
        found = backfill_intervals(workflow.schedule, start, end, every)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if not found:
        raise UserError(f"no slot of {workflow.application_name} has a logical date in [{start}, {end})")
    # Every refusal a run would make (parameters, templates), before anything starts.
    runnable(workflow, new_run_inputs(workflow, given=request.params, interval=found[0]), DRY_RUN_ID)
    rows = slots.in_range(ctx.engine, workflow.application_name, found[0].end, found[-1].end)
    with read_tx(ctx.engine) as conn:
        statuses = latest_statuses(conn, [r.run_id for r in rows.values() if r.run_id is not None])
    work = []
    for interval in found:
        ds = interval.logical_date.astimezone(tz).strftime("%Y-%m-%d")
        row = rows.get(interval.end)
        work.append(SlotWork(interval, ds, *_decide(row, statuses, request.rerun_failed)))
    return Backfill(workflow, work)


def _decide(
    row: Any, statuses: dict[int, str], rerun_failed: bool
) -> tuple[str, int | None, str | None, str]:
    if row is None or row.outcome in slots.RECLAIMABLE:
        why = f"earlier fire {row.outcome}" if row is not None else ""
        return Action.RUN, None, None, why
    if row.outcome == slots.FIRING:
        return Action.REPORT, None, None, f"being started by {row.fired_by}"
    if row.run_id is None:  # its run was pruned: history says it ran, the slot stays done
        return Action.REPORT, None, None, f"slot {row.outcome}"
    status = statuses.get(row.run_id)
    if status == AttemptStatus.SUCCESS:
        return Action.SKIP, row.run_id, status, "already SUCCESS"
    if status in RERUNNABLE and rerun_failed:
        return Action.RESUME, row.run_id, status, "resumed --failed-only"
    if status in RERUNNABLE:
        return Action.REPORT, row.run_id, status, "not SUCCESS (--rerun-failed resumes it)"
    return Action.REPORT, row.run_id, status, f"run {row.run_id} is {status}"


def _when(text: str, tz: ZoneInfo, flag: str) -> datetime:
    try:
        return parse_datetime(text, tz)
    except ValueError as exc:
        raise UserError(f"{flag} {exc}") from None


Report = Callable[[SlotWork, str], None]  # a slot and what just happened to it ("started", "ended")


def run_backfill(
    ctx: Context, request: BackfillRequest, stop: threading.Event, report: Report | None = None
) -> Backfill:
    """Work through the plan, ``max_active_runs`` at a time; ``stop`` set: cancel and return."""
    backfill = plan_backfill(ctx, request)
    report = report or (lambda _slot, _what: None)
    launcher = SubprocessLauncher(ctx, TRIGGERED_BY, stdout=subprocess.DEVNULL)
    extra = [*_run_flags(request), *(f"--param={k}={v}" for k, v in request.params.items())]
    active: list[tuple[SlotWork, subprocess.Popen]] = []
    pending = [s for s in backfill.slots if s.action in (Action.RUN, Action.RESUME)]
    for s in backfill.slots:
        if s.action not in (Action.RUN, Action.RESUME):
            report(s, s.action)
    while (pending or active) and not stop.is_set():
        while pending and len(active) < request.max_active_runs and not stop.is_set():
            work = pending.pop(0)
            process = _start(ctx, backfill.workflow, work, launcher, extra, request)
            if process is None:
                report(work, "not started")
                continue
            active.append((work, process))
            report(work, "started")
        active = _wait_some(ctx, backfill.workflow, active, stop, report)
    if stop.is_set():
        backfill.interrupted = True
        for _, process in active:  # the run cancels its jobs and records CANCELLED
            process.send_signal(signal.SIGINT)
        for work, process in active:
            process.wait()
            _ended(ctx, backfill.workflow, work, process.returncode, report)
    return backfill


def _start(
    ctx: Context, workflow: Workflow, work: SlotWork, launcher, extra, request
) -> subprocess.Popen | None:
    app, slot = workflow.application_name, work.interval.end
    if work.action == Action.RESUME:
        argv = [sys.executable, "-m", "orchestrator.cli", "resume", str(work.run_id), "--failed-only"]
        return subprocess.Popen(
            [*argv, *_run_flags(request)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            env={**os.environ, **settings_env(ctx)},
            start_new_session=True,
        )
    by = f"backfill {os.uname().nodename}:{os.getpid()}"
    if not (slots.claim(ctx.engine, app, slot, by) or slots.reclaim(ctx.engine, app, slot, by)):
        work.action, work.reason = Action.REPORT, "taken by another scheduler or backfill"
        return None
    try:
        return launcher(workflow, work.interval, extra)
    except OSError as exc:  # no process, no run: the slot says why, the backfill goes on
        slots.mark_failed(ctx.engine, app, slot, f"could not start the run: {exc}")
        work.action, work.reason = Action.REPORT, f"could not start the run: {exc}"
        return None


def _run_flags(request: BackfillRequest) -> list[str]:
    flags = []
    if request.executor:
        flags.append(f"--executor={request.executor}")
    if request.max_parallel:
        flags.append(f"--max-parallel={request.max_parallel}")
    return flags


def _wait_some(ctx, workflow, active, stop: threading.Event, report: Report) -> list:
    """Wait (0.2 s slices, so a stop is seen) until at least one run ended; return those still running."""
    while not stop.is_set():
        still = []
        for work, process in active:
            code = process.poll()
            if code is None:
                still.append((work, process))
            else:
                _ended(ctx, workflow, work, code, report)
        if len(still) < len(active) or not active:
            return still
        stop.wait(0.2)
    return active


def _ended(ctx: Context, workflow: Workflow, work: SlotWork, code: int, report: Report) -> None:
    work.exit_code = code
    with read_tx(ctx.engine) as conn:
        row = slots.get(conn, workflow.application_name, work.interval.end)
        run_id = work.run_id or (row.run_id if row is not None else None)
        status = latest_statuses(conn, [run_id]).get(run_id) if run_id is not None else None
    work.run_id, work.status = run_id, status
    if status is None:
        work.reason = (
            row.reason if row is not None and row.reason else None
        ) or f"the run exited with code {code}"
    report(work, "ended")
