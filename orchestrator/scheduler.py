"""``executioner scheduler``: fire runs on each workflow's cron schedule, once per slot across machines.

Each slot is claimed through ``orchestrator.slots`` (a unique row per application and slot, shared
with backfill): of two schedulers that wake for the same slot, on SQLite or PostgreSQL, exactly one
claims and fires it. The claim becomes ``fired`` only in the transaction that creates its run, or
``failed`` with the reason (an invalid file, a template error, a run process that died first), so
no slot is ever lost silently. A run's data interval is the one its slot closes
(``orchestrator.intervals``). Runs are separate ``executioner run`` processes in their own sessions:
a scheduler restart (a deploy, a SIGTERM) never interrupts a pipeline. Time comes from an
injectable clock, so tests drive it.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import func, select

from orchestrator import intervals, slots
from orchestrator.context import Context
from orchestrator.db.engine import read_tx
from orchestrator.db.queries import get_run
from orchestrator.db.schema import attempts, schedule_slots
from orchestrator.deadlines import check_slas
from orchestrator.errors import UserError
from orchestrator.intervals import Interval, next_slot, scheduled_interval, slots_between
from orchestrator.loader import load_workflow
from orchestrator.notify import deliver
from orchestrator.run_inputs import DRY_RUN_ID, new_run_inputs, runnable
from orchestrator.workflow import Schedule, Workflow
from workers.statuses import AttemptStatus

log = logging.getLogger("executioner.scheduler")
TRIGGERED_BY = "scheduler"
ON_TIME_GRACE = timedelta(seconds=60)  # a slot fired this late still counts as on time, not missed


class Outcome:
    FIRED = slots.FIRED
    FAILED = slots.FAILED  # the fire could not create a run: the row says why
    SKIPPED_OVERLAP = slots.SKIPPED_OVERLAP
    SKIPPED_MISSED = slots.SKIPPED_MISSED


class Clock(Protocol):
    def now(self) -> datetime: ...

    def wait(self, until: datetime, stop: threading.Event) -> bool:
        """Sleep until ``until`` unless stopped first; True if stopped."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def wait(self, until: datetime, stop: threading.Event) -> bool:
        # At most a minute at a time: children that exit are noticed, stale claims expired.
        return stop.wait(min(60.0, max(0.0, (until - self.now()).total_seconds())))


@dataclass(frozen=True, slots=True)
class Decision:
    slot: datetime
    outcome: str


def plan_slots(schedule: Schedule, last: datetime, now: datetime) -> list[Decision]:
    """What to do with every slot since ``last`` (pure): fire on-time ones, apply the catch-up policy."""
    slots = slots_between(schedule, last, now)
    if not slots:
        return []
    on_time = slots[-1] if now - slots[-1] <= ON_TIME_GRACE else None
    missed = [s for s in slots if s is not on_time]
    fire: set[datetime] = set()
    if schedule.catchup == "latest" and missed and on_time is None:
        fire.add(missed[-1])
    elif schedule.catchup == "all":
        fire.update(missed[-schedule.catchup_limit :])
    if on_time is not None:
        fire.add(on_time)
    decisions = [Decision(s, Outcome.FIRED) for s in slots if s in fire]
    skipped = [s for s in missed if s not in fire]
    if skipped:  # recorded once, as the newest skipped slot: it moves the watermark past them all
        decisions.append(Decision(skipped[-1], Outcome.SKIPPED_MISSED))
    return sorted(decisions, key=lambda d: d.slot)


Launcher = Callable[[Workflow, Interval], Any]  # starts a run; returns a handle with poll()


@dataclass(slots=True)
class _Child:
    app: str
    slot: datetime
    process: Any  # poll() -> exit code or None


class Scheduler:
    """Fires each workflow's due slots. The file is read again at every pass: an edit takes effect
    without a restart, and a file that became invalid makes its slots ``failed`` (with the reason,
    logged) instead of losing them; the last valid schedule keeps time meanwhile."""

    def __init__(
        self,
        ctx: Context,
        paths: list[str],
        *,
        clock: Clock | None = None,
        launcher: Launcher | None = None,
        name: str | None = None,
    ) -> None:
        self.ctx = ctx
        self.clock = clock or SystemClock()
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.paths: dict[str, str] = {}
        self.workflows: dict[str, Workflow] = {}  # the last valid version of each
        for path in paths:
            workflow = load_workflow(path)
            if workflow.schedule is None:
                raise UserError(f"{path}: field 'schedule': is required to be scheduled")
            if workflow.application_name in self.workflows:
                raise UserError(f"{path}: application {workflow.application_name!r} is scheduled twice")
            self.paths[workflow.application_name] = path
            self.workflows[workflow.application_name] = workflow
        self.launcher = launcher or SubprocessLauncher(ctx)
        self.children: list[_Child] = []
        started = self.clock.now()
        self.watermark = {app: self._last_slot(app) or started for app in self.workflows}

    def run(self, stop: threading.Event) -> None:
        log.info(
            "scheduler %s: %d workflow(s): %s", self.name, len(self.workflows), ", ".join(self.workflows)
        )
        while not stop.is_set():
            self.tick(self.clock.now())
            if self.clock.wait(self.next_due(), stop):
                break
        log.info("scheduler %s: stopped; runs it started go on", self.name)

    def once(self) -> list[tuple[str, datetime, str]]:
        """``scheduler --once``: fire what is due now. A workflow never scheduled before treats its
        newest slot at or before now as due (a cron-driven install has no earlier pass to remember)."""
        now = self.clock.now()
        for app, workflow in self.workflows.items():
            if self._last_slot(app) is None:
                newest = intervals.floor_slot(workflow.schedule, now)
                self.watermark[app] = newest - timedelta(microseconds=1)
        return self.tick(now)

    def next_due(self) -> datetime:
        return min(next_slot(wf.schedule, self.watermark[app]) for app, wf in self.workflows.items())

    def tick(self, now: datetime) -> list[tuple[str, datetime, str]]:
        """Handle every slot due by ``now``; returns what this scheduler did (app, slot, outcome)."""
        self._reap()
        self._expire_stale_claims(now)
        try:  # watching SLAs must never keep a slot from firing
            check_slas(self.ctx.engine, self.workflows, now)
        except Exception as exc:
            log.warning("sla check failed: %s", exc)
        deliver(self.ctx.engine, budget=10.0)  # alerts left by runs whose coordinator died, by failures
        done = []
        for app in self.workflows:
            current, problem = self._reload(app)
            schedule = self.workflows[app].schedule
            last = max(self.watermark[app], self._last_slot(app) or self.watermark[app])
            for decision in plan_slots(schedule, last, now):
                outcome = self._handle(app, current, problem, decision)
                if outcome is not None:
                    done.append((app, decision.slot, outcome))
                last = max(last, decision.slot)
            self.watermark[app] = last
        return done

    def _reload(self, app: str) -> tuple[Workflow | None, str | None]:
        """The file as it is now, or why it cannot be fired."""
        path = self.paths[app]
        try:
            workflow = load_workflow(path)
        except UserError as exc:
            return None, "; ".join(exc.lines())
        if workflow.application_name != app:
            return (
                None,
                f"{path}: application_name is now {workflow.application_name!r} (restart the scheduler)",
            )
        if workflow.schedule is None:
            return None, f"{path}: field 'schedule' was removed"
        self.workflows[app] = workflow
        return workflow, None

    def _handle(
        self, app: str, workflow: Workflow | None, problem: str | None, decision: Decision
    ) -> str | None:
        slot, outcome = decision.slot, decision.outcome
        if outcome != Outcome.FIRED:
            return outcome if self._record(app, slot, outcome) else None
        if self.workflows[app].schedule.overlap == "skip" and self._running(app):
            return Outcome.SKIPPED_OVERLAP if self._record(app, slot, Outcome.SKIPPED_OVERLAP) else None
        interval = scheduled_interval(self.workflows[app].schedule, slot)
        if problem is None:
            assert workflow is not None
            try:  # the run would refuse them: say so on the slot, not in a log nobody reads
                runnable(workflow, new_run_inputs(workflow, interval=interval), DRY_RUN_ID)
            except UserError as exc:
                problem = "; ".join(exc.lines())
        if problem is not None:
            if not self._record(app, slot, Outcome.FAILED, problem):
                return None
            log.error("%s: slot %s: failed: %s", app, slot.isoformat(), problem)
            return Outcome.FAILED
        if not slots.claim(self.ctx.engine, app, slot, self.name):
            return None  # another scheduler (or a backfill) has it
        assert workflow is not None
        try:
            process = self.launcher(workflow, interval)
        except Exception as exc:  # e.g. OSError: no process, so no run: the slot says why
            slots.mark_failed(self.ctx.engine, app, slot, f"could not start the run: {exc}", workflow.notify)
            log.error("%s: slot %s: failed: could not start the run: %s", app, slot.isoformat(), exc)
            return Outcome.FAILED
        self.children.append(_Child(app, slot, process))
        log.info("%s: slot %s: fired", app, slot.isoformat())
        return Outcome.FIRED

    def _record(self, app: str, slot: datetime, outcome: str, reason: str = "") -> bool:
        notify = self.workflows[app].notify  # the last valid version's rules
        if not slots.claim(self.ctx.engine, app, slot, self.name, outcome, reason, notify):
            return False
        if outcome != Outcome.FAILED:
            log.info("%s: slot %s: %s", app, slot.isoformat(), outcome)
        return True

    def _reap(self) -> None:
        """A run process that ended without creating its run (a crash): its slot becomes ``failed``.
        (One that refused says why itself; then this changes nothing.)"""
        alive = []
        for child in self.children:
            code = child.process.poll()
            if code is None:
                alive.append(child)
            elif code != 0 and slots.mark_failed(
                self.ctx.engine,
                child.app,
                child.slot,
                f"the run process exited with code {code} before the run began",
                self.workflows[child.app].notify,
            ):
                log.error("%s: slot %s: failed: run process exited with code %s", child.app, child.slot, code)
        self.children = alive

    def _expire_stale_claims(self, now: datetime) -> None:
        mine = {(c.app, c.slot) for c in self.children}
        for row in slots.stale_claims(self.ctx.engine, now):
            if row.application_name in self.workflows and (row.application_name, row.slot) not in mine:
                reason = f"no run was created within {slots.FIRING_TIMEOUT} of the claim by {row.fired_by}"
                notify = self.workflows[row.application_name].notify
                if slots.mark_failed(self.ctx.engine, row.application_name, row.slot, reason, notify):
                    log.error("%s: slot %s: failed: %s", row.application_name, row.slot.isoformat(), reason)

    def _last_slot(self, app: str) -> datetime | None:
        with read_tx(self.ctx.engine) as conn:
            return conn.execute(
                select(func.max(schedule_slots.c.slot)).where(schedule_slots.c.application_name == app)
            ).scalar()

    def _running(self, app: str) -> bool:
        """Is the previous scheduled run of ``app`` still running (ours, or another scheduler's)?"""
        if any(c.app == app and c.process.poll() is None for c in self.children):
            return True
        with read_tx(self.ctx.engine) as conn:
            latest = conn.execute(
                select(func.max(attempts.c.run_id)).where(
                    attempts.c.application_name == app, attempts.c.triggered_by == TRIGGERED_BY
                )
            ).scalar()
            if latest is None:
                return False
            status = conn.execute(
                select(attempts.c.status)
                .where(attempts.c.run_id == latest)
                .order_by(attempts.c.attempt_id.desc())
                .limit(1)
            ).scalar()
            run = get_run(conn, latest)
        if status != AttemptStatus.RUNNING:
            return False
        try:
            return self.ctx.locks_for(run).holder(latest) is not None
        except UserError as exc:  # its lock cannot be reached from here: assume it still runs
            log.warning("%s", exc)
            return True


class SubprocessLauncher:
    """Each fired run is an ``executioner run`` process in its own session (a scheduler restart never
    interrupts a pipeline). Its output goes where the scheduler's goes (journald, compose logs)."""

    def __init__(self, ctx: Context, triggered_by: str = TRIGGERED_BY, stdout: Any = None) -> None:
        self.ctx = ctx
        self.triggered_by = triggered_by
        self.stdout = stdout

    def argv(self, workflow: Workflow, interval: Interval, extra: list[str] | None = None) -> list[str]:
        from orchestrator.launch import SlotRequest, slot_to_json

        slot = interval.end
        how = f"cron {workflow.schedule.cron}" if workflow.schedule else self.triggered_by
        return [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "run",
            str(Path(workflow.source).resolve()),
            "--triggered-by",
            self.triggered_by,
            "--trigger-reason",
            f"{how} slot {slot.isoformat()}",
            "--slot",
            slot_to_json(SlotRequest(workflow.application_name, interval)),
            *(extra or []),
        ]

    def __call__(
        self, workflow: Workflow, interval: Interval, extra: list[str] | None = None
    ) -> subprocess.Popen:
        return subprocess.Popen(
            self.argv(workflow, interval, extra),
            stdin=subprocess.DEVNULL,
            stdout=self.stdout,
            env={**os.environ, **settings_env(self.ctx)},
            start_new_session=True,
        )


def settings_env(ctx: Context) -> dict[str, str]:
    s = ctx.settings
    env = {"EXECUTIONER_HOME": str(s.home), "EXECUTIONER_DATABASE_URL": s.database_url}
    if s.broker_url:
        env["EXECUTIONER_BROKER_URL"] = s.broker_url
    if s.worker.result_backend:
        env["EXECUTIONER_RESULT_BACKEND"] = s.worker.result_backend
    if s.lock_urls:
        env["EXECUTIONER_LOCK_URLS"] = ",".join(s.lock_urls)
    return env
