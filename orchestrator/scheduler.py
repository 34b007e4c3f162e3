"""``executioner scheduler``: fire runs on each workflow's cron schedule, once per slot across machines.

Each fired slot is claimed by inserting its row in ``schedule_slots`` (unique per application and
slot): the history database is shared by every scheduler of a deployment, so of two schedulers that
wake for the same slot, on SQLite or PostgreSQL, exactly one inserts it and fires. Runs are started
as separate ``executioner run`` processes in their own sessions: a scheduler restart (a deploy, a
SIGTERM) never interrupts a pipeline. Time comes from an injectable clock, so tests drive it.
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
from typing import Protocol
from zoneinfo import ZoneInfo

from croniter import croniter
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from orchestrator.context import Context
from orchestrator.db.engine import read_tx, write_tx
from orchestrator.db.queries import get_run
from orchestrator.db.schema import attempts, schedule_slots
from orchestrator.errors import UserError
from orchestrator.loader import load_workflow
from orchestrator.workflow import Schedule, Workflow
from workers.statuses import AttemptStatus

log = logging.getLogger("executioner.scheduler")
TRIGGERED_BY = "scheduler"
ON_TIME_GRACE = timedelta(seconds=60)  # a slot fired this late still counts as on time, not missed


class Outcome:
    FIRED = "fired"
    SKIPPED_OVERLAP = "skipped_overlap"  # overlap=skip and the previous scheduled run still runs
    SKIPPED_MISSED = "skipped_missed"  # missed during downtime, not caught up per the policy


class Clock(Protocol):
    def now(self) -> datetime: ...

    def wait(self, until: datetime, stop: threading.Event) -> bool:
        """Sleep until ``until`` unless stopped first; True if stopped."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def wait(self, until: datetime, stop: threading.Event) -> bool:
        return stop.wait(max(0.0, (until - self.now()).total_seconds()))


def slots_between(schedule: Schedule, after: datetime, upto: datetime) -> list[datetime]:
    """Slot times (UTC) with ``after < slot <= upto``, computed in the schedule's time zone."""
    it = croniter(schedule.cron, after.astimezone(ZoneInfo(schedule.timezone)))
    slots = []
    while True:
        slot = it.get_next(datetime).astimezone(UTC)
        if slot > upto:
            return slots
        slots.append(slot)


def next_slot(schedule: Schedule, after: datetime) -> datetime:
    return (
        croniter(schedule.cron, after.astimezone(ZoneInfo(schedule.timezone)))
        .get_next(datetime)
        .astimezone(UTC)
    )


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


Launcher = Callable[[Workflow, datetime], object]  # starts a run; returns a handle with poll()


class Scheduler:
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
        self.workflows: dict[str, tuple[str, Workflow]] = {}
        for path in paths:
            workflow = load_workflow(path)
            if workflow.schedule is None:
                raise UserError(f"{path}: field 'schedule': is required to be scheduled")
            if workflow.application_name in self.workflows:
                raise UserError(f"{path}: application {workflow.application_name!r} is scheduled twice")
            self.workflows[workflow.application_name] = (path, workflow)
        self.launcher = launcher or SubprocessLauncher(ctx)
        self.children: dict[str, list] = {app: [] for app in self.workflows}
        started = self.clock.now()
        self.watermark = {app: self._last_slot(app) or started for app in self.workflows}

    def run(self, stop: threading.Event) -> None:
        log.info(
            "scheduler %s: %d workflow(s): %s", self.name, len(self.workflows), ", ".join(self.workflows)
        )
        while not stop.is_set():
            self.tick(self.clock.now())
            due = min(next_slot(wf.schedule, self.watermark[app]) for app, (_, wf) in self.workflows.items())
            if self.clock.wait(due, stop):
                break
        log.info("scheduler %s: stopped; runs it started go on", self.name)

    def tick(self, now: datetime) -> list[tuple[str, datetime, str]]:
        """Handle every slot due by ``now``; returns what this scheduler did (app, slot, outcome)."""
        done = []
        for app, (_, workflow) in self.workflows.items():
            last = max(self.watermark[app], self._last_slot(app) or self.watermark[app])
            for decision in plan_slots(workflow.schedule, last, now):
                outcome = decision.outcome
                if outcome == Outcome.FIRED and workflow.schedule.overlap == "skip" and self._running(app):
                    outcome = Outcome.SKIPPED_OVERLAP
                if self._claim(app, decision.slot, outcome):
                    if outcome == Outcome.FIRED:
                        self.children[app].append(self.launcher(workflow, decision.slot))
                    done.append((app, decision.slot, outcome))
                    log.info("%s: slot %s: %s", app, decision.slot.isoformat(), outcome)
                last = max(last, decision.slot)
            self.watermark[app] = last
        return done

    def _claim(self, app: str, slot: datetime, outcome: str) -> bool:
        try:
            with write_tx(self.ctx.engine) as conn:
                conn.execute(
                    insert(schedule_slots).values(
                        application_name=app,
                        slot=slot,
                        fired_at=self.clock.now(),
                        fired_by=self.name,
                        outcome=outcome,
                    )
                )
        except IntegrityError:
            return False  # another scheduler had it
        return True

    def _last_slot(self, app: str) -> datetime | None:
        with read_tx(self.ctx.engine) as conn:
            return conn.execute(
                select(func.max(schedule_slots.c.slot)).where(schedule_slots.c.application_name == app)
            ).scalar()

    def _running(self, app: str) -> bool:
        """Is the previous scheduled run of ``app`` still running (ours, or another scheduler's)?"""
        self.children[app] = [c for c in self.children[app] if c.poll() is None]
        if self.children[app]:
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
    """Each fired run is an ``executioner run`` process in its own session, its output in a log file."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.logs = ctx.settings.home / "scheduler-logs"

    def __call__(self, workflow: Workflow, slot: datetime) -> subprocess.Popen:
        self.logs.mkdir(parents=True, exist_ok=True)
        stamp = slot.strftime("%Y%m%dT%H%M%SZ")
        env = {**os.environ, **_settings_env(self.ctx)}
        with open(self.logs / f"{workflow.application_name}-{stamp}.log", "ab") as out:
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "orchestrator.cli",
                    "run",
                    str(Path(workflow.source).resolve()),
                    "--triggered-by",
                    TRIGGERED_BY,
                    "--trigger-reason",
                    f"cron {workflow.schedule.cron} slot {slot.isoformat()}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a scheduler restart never interrupts a pipeline
            )


def _settings_env(ctx: Context) -> dict[str, str]:
    s = ctx.settings
    env = {"EXECUTIONER_HOME": str(s.home), "EXECUTIONER_DATABASE_URL": s.database_url}
    if s.broker_url:
        env["EXECUTIONER_BROKER_URL"] = s.broker_url
    if s.worker.result_backend:
        env["EXECUTIONER_RESULT_BACKEND"] = s.worker.result_backend
    if s.lock_urls:
        env["EXECUTIONER_LOCK_URLS"] = ",".join(s.lock_urls)
    return env
