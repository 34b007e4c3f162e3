"""``run`` and ``resume``: validate, plan, then hand the attempt to a coordinator.

Refusals (bad workflow, unknown ids, refused changes, a held lock, nothing to do) happen before the
attempt exists, so they write nothing; the attempt row appears with its first dispatched job.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orchestrator.cancelling import CancelWatch
from orchestrator.changes import Verdict, diff_workflows, judge_changes
from orchestrator.context import Context
from orchestrator.coordinator import AttemptOutcome, Coordinator
from orchestrator.db.engine import read_tx
from orchestrator.db.queries import RunRecord, get_run, load_run
from orchestrator.db.recorder import AttemptRecorder, AttemptStart
from orchestrator.errors import RefusedError, UserError
from orchestrator.intervals import Interval
from orchestrator.loader import file_sha256, load_workflow
from orchestrator.locks.base import LockOwner, RunHandle
from orchestrator.notify import deliver
from orchestrator.planner import Plan, PlanRequest, plan
from orchestrator.reporting import Reporter
from orchestrator.run_inputs import DRY_RUN_ID, RunInputs, new_run_inputs, runnable, shown_command
from orchestrator.settle import load_settled
from orchestrator.slots import mark_failed
from orchestrator.state import RunState, derived_run_status
from orchestrator.stored import stored_workflow
from orchestrator.workflow import Workflow


@dataclass(frozen=True, slots=True)
class SlotRequest:
    """A run that fires a claimed schedule slot (scheduler, backfill): see ``orchestrator.slots``."""

    application_name: str
    interval: Interval  # the slot is its end

    @property
    def slot(self):
        return self.interval.end


def slot_to_json(slot: SlotRequest) -> str:
    return json.dumps(
        {"app": slot.application_name, "start": slot.interval.start.isoformat(), "end": slot.slot.isoformat()}
    )


def slot_from_json(text: str) -> SlotRequest:
    """The hidden ``run --slot`` value the scheduler and backfill pass to the run they start."""
    try:
        data = json.loads(text)
        start, end = datetime.fromisoformat(data["start"]), datetime.fromisoformat(data["end"])
        return SlotRequest(str(data["app"]), Interval(start, end, start))
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"--slot: not a slot ({exc})") from None


@dataclass(slots=True)
class RunRequest:
    workflow_path: str
    from_jobs: tuple[str, ...] = ()
    executor: str | None = None
    max_parallel: int | None = None
    dry_run: bool = False
    triggered_by: str = "cli"
    trigger_reason: str = "run"
    params: dict[str, Any] = field(default_factory=dict)  # --params-file values, then --param
    logical_date: str | None = None
    slot: SlotRequest | None = None


@dataclass(slots=True)
class ResumeRequest:
    run_id: int
    workflow_path: str | None = None  # None: the last attempt's stored workflow
    failed_only: bool = False
    force: bool = False
    rerun_changed: bool = False
    from_jobs: tuple[str, ...] = ()
    executor: str | None = None
    max_parallel: int | None = None
    dry_run: bool = False
    triggered_by: str = "cli"
    trigger_reason: str = "resume"
    params: dict[str, Any] = field(default_factory=dict)  # refused: a run is its parameters
    user: str | None = None  # who resumes, when not the OS user (the web view's signed-in user)


@dataclass(slots=True)
class DryRun:
    plan: Plan | None
    verdict: Verdict | None = None
    errors: list[str] = field(default_factory=list)
    run_id: int | None = None
    attempt_id: int | None = None
    inputs: RunInputs | None = None
    commands: dict[str, Any] = field(default_factory=dict)  # rendered, of the jobs that would run
    warnings: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict:
        decisions = self.plan.decisions.values() if self.plan else []
        changes = []
        if self.verdict is not None:
            changes = [{**c.as_dict(), "allowed_by": str(how)} for c, how in self.verdict.allowed]
            changes += [{**c.as_dict(), "refused": why} for c, why in self.verdict.refused]
        return {
            "run_id": self.run_id,
            "attempt_id": self.attempt_id,
            "will_run": [d.job_id for d in decisions if d.runs],
            "will_skip": [d.job_id for d in decisions if not d.runs],
            "reasons": {d.job_id: d.as_dict() for d in decisions},
            "changes": changes,
            "valid": self.valid,
            "errors": self.errors,
            "warnings": self.warnings,
            **(self.inputs.as_dict() if self.inputs is not None else {"params": None, "logical_date": None}),
            "commands": self.commands,
        }


@dataclass(slots=True)
class NothingToDo:
    """A resume whose plan runs no job: no attempt is written (no ghost attempts)."""

    run_id: int
    status: str  # the run's status, that of its latest attempt
    state: RunState
    plan: Plan
    warnings: list[str] = field(default_factory=list)


Hook = Callable[[Coordinator], None]
NOTIFY_BUDGET = 10.0  # seconds a run or resume spends on sending its alerts, at most


def start_run(
    ctx: Context, request: RunRequest, reporter: Reporter | None = None, on_start: Hook | None = None
) -> AttemptOutcome | DryRun:
    if request.dry_run:
        try:
            workflow, inputs, rendered = _prepare_run(request)
            the_plan = plan(workflow, RunState(), PlanRequest(from_jobs=request.from_jobs))
        except UserError as exc:
            return DryRun(None, errors=exc.lines())
        return DryRun(the_plan, inputs=inputs, commands=_commands(rendered, the_plan))
    if request.slot is None:
        return _start(ctx, request, reporter, on_start)
    try:
        return _start(ctx, request, reporter, on_start)
    except BaseException as exc:  # the claimed slot says why it has no run (no-op once it fired)
        reason = "; ".join(exc.lines()) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        # If the history is unreachable the claim expires (orchestrator.slots); the original error
        # is the one to report. The alert goes to the file's rules, when it still loads.
        with contextlib.suppress(Exception):
            rules = ()
            with contextlib.suppress(Exception):
                rules = load_workflow(request.workflow_path).notify
            slot = request.slot
            mark_failed(ctx.engine, slot.application_name, slot.slot, reason or "interrupted", rules)
        raise


def _start(
    ctx: Context, request: RunRequest, reporter: Reporter | None, on_start: Hook | None
) -> AttemptOutcome:
    workflow, inputs, _ = _prepare_run(request)
    the_plan = plan(workflow, RunState(), PlanRequest(from_jobs=request.from_jobs))
    owner = LockOwner("run")
    start = AttemptStart(
        workflow=workflow,
        plan=the_plan,
        owner=owner,
        executor=request.executor or ctx.settings.default_executor,
        triggered_by=request.triggered_by,
        trigger_reason=request.trigger_reason,
        workflow_path=request.workflow_path,
        workflow_sha256=workflow.file_sha256,
        request={
            "command": "run",
            "from_jobs": list(request.from_jobs),
            "max_parallel": request.max_parallel,
        },
        inputs=inputs,
        slot=request.slot.slot if request.slot else None,
    )
    # The lock is taken in the transaction that creates the run (at its first dispatch).
    with RunHandle(ctx.locks, owner) as handle:
        return _drive(ctx, start, handle, request.max_parallel, reporter, on_start)


def _prepare_run(request: RunRequest) -> tuple[Workflow, RunInputs, Workflow]:
    """Load, resolve the run's inputs and render every template once: all refusals come here."""
    workflow = load_workflow(request.workflow_path)
    slot = request.slot
    if slot is not None and slot.application_name != workflow.application_name:
        raise UserError(
            f"{request.workflow_path}: application {workflow.application_name!r} is not the scheduled "
            f"{slot.application_name!r}"
        )
    inputs = new_run_inputs(
        workflow,
        given=request.params,
        logical_date=request.logical_date,
        interval=slot.interval if slot else None,
    )
    # Rendered with a stand-in run id to refuse a bad template now; again with the real one at begin.
    return workflow, inputs, runnable(workflow, inputs, DRY_RUN_ID)


def validate_workflow(path: str, params: dict[str, Any] | None = None) -> Workflow:
    """``validate``: every rule of the file, its parameters (required ones without a value get a
    stand-in of their type) and every template rendered; ``UserError`` listing the problems."""
    workflow = load_workflow(path)
    runnable(workflow, new_run_inputs(workflow, given=params, placeholders=True), DRY_RUN_ID)
    return workflow


def _commands(rendered: Workflow, the_plan: Plan) -> dict[str, Any]:
    return {j: shown_command(rendered.jobs[j]) for j in the_plan.will_run}


def resume_run(
    ctx: Context,
    request: ResumeRequest,
    reporter: Reporter | None = None,
    on_start: Hook | None = None,
    warn: Callable[[str], None] | None = None,
) -> AttemptOutcome | DryRun | NothingToDo:
    if request.params:
        raise UserError("--param: parameters belong to the run; start a new run to change them")
    if request.dry_run:
        with read_tx(ctx.engine) as conn:
            record = load_run(conn, request.run_id)  # unknown run: exit 2
        inputs = RunInputs.from_row(record.run)
        warnings = file_warnings(record, request)
        try:
            given = load_workflow(request.workflow_path) if request.workflow_path else None
            workflow, verdict, the_plan = _plan_resume(record, given, request)
            rendered = runnable(workflow, inputs, record.run_id)
        except UserError as exc:
            return DryRun(None, errors=exc.lines(), run_id=record.run_id, inputs=inputs, warnings=warnings)
        return DryRun(
            the_plan,
            verdict,
            verdict.refusal_lines(),
            record.run_id,
            record.next_attempt_id,
            inputs,
            _commands(rendered, the_plan),
            warnings,
        )
    with read_tx(ctx.engine) as conn:
        run = get_run(conn, request.run_id)  # unknown run: exit 2 before anything else
    given = load_workflow(request.workflow_path) if request.workflow_path else None
    owner = LockOwner("resume", user=request.user) if request.user else LockOwner("resume")
    with RunHandle(ctx.locks_for(run), owner, request.run_id).acquire() as handle:
        record = load_settled(ctx, handle)
        # Alerts its last attempt left undelivered (its coordinator died, or a receiver was down).
        deliver(ctx.engine, run_id=request.run_id, budget=NOTIFY_BUDGET, due_only=False)
        warnings = file_warnings(record, request)
        if warn is not None:
            for text in warnings:
                warn(text)
        workflow, verdict, the_plan = _plan_resume(record, given, request)
        inputs = RunInputs.from_row(record.run)
        rendered = runnable(workflow, inputs, record.run_id)
        if not verdict.ok:
            raise RefusedError(
                f"resume of run {request.run_id} refused: the workflow changed "
                f"({len(verdict.refused)} difference(s) not allowed)",
                verdict.refusal_lines(),
            )
        if the_plan.nothing_to_do:
            status = derived_run_status(
                record.last_attempt.status, record.state, workflow.jobs, record.manual_after_last
            )
            return NothingToDo(request.run_id, status, record.state, the_plan, warnings)
        last = record.last_attempt
        start = AttemptStart(
            workflow=workflow,
            plan=the_plan,
            owner=owner,
            executor=request.executor or ctx.settings.default_executor,
            triggered_by=request.triggered_by,
            trigger_reason=request.trigger_reason,
            run_id=request.run_id,
            attempt_id=record.next_attempt_id,
            parent_attempt_id=last.attempt_id if last is not None else None,
            workflow_path=request.workflow_path or (last.workflow_path if last is not None else None),
            # The stored workflow keeps the file it came from: its path and digest go on together.
            workflow_sha256=given.file_sha256 if given else getattr(last, "workflow_sha256", None),
            request={
                "command": "resume",
                "failed_only": request.failed_only,
                "force": request.force,
                "rerun_changed": request.rerun_changed,
                "from_jobs": list(request.from_jobs),
                "max_parallel": request.max_parallel,
                "workflow": "file" if request.workflow_path else "stored",
            },
            changes=verdict.records(),
            forced=verdict.forced,
            inputs=inputs,
            runnable=rendered,
        )
        outcome = _drive(ctx, start, handle, request.max_parallel, reporter, on_start)
        outcome.warnings = warnings
        return outcome


def file_warnings(record: RunRecord, request: ResumeRequest) -> list[str]:
    """A resume without ``-c`` uses the stored workflow: say so when the file it came from changed."""
    last = record.last_attempt
    if request.workflow_path or last is None or not last.workflow_path:
        return []
    path = last.workflow_path
    try:
        # The same bytes load to the same workflow: an unchanged file is known by its digest alone
        # (100,000 jobs: 0.1 s, not the ~5 s of loading and checking it). Older attempts have none.
        if last.workflow_sha256 is not None and file_sha256(path) == last.workflow_sha256:
            return []
        current = load_workflow(path)
    except UserError as exc:
        if "file not found" in exc.message:
            return [
                f"{path} (the workflow of attempt {last.attempt_id}) no longer exists; using the stored one"
            ]
        return [
            f"{path} changed since attempt {last.attempt_id} and is not valid now; using the stored workflow"
        ]
    if current.config_hash == last.config_hash:
        return []
    return [
        f"{path} changed since attempt {last.attempt_id}; this resume uses the workflow stored with it "
        f"(pass -c {path} to use the file)"
    ]


def _plan_resume(
    record: RunRecord, given: Workflow | None, request: ResumeRequest
) -> tuple[Workflow, Verdict, Plan]:
    previous = stored_workflow(record)
    if given is not None and given.application_name != previous.application_name:
        raise UserError(
            f"{given.source}: application {given.application_name!r} is another pipeline than run "
            f"{record.run_id}'s {previous.application_name!r}; start a new run (--force does not apply)"
        )
    workflow = given or previous
    verdict = judge_changes(
        diff_workflows(previous, workflow),
        record.state,
        force=request.force,
        rerun_changed=request.rerun_changed,
    )
    the_plan = plan(
        workflow,
        record.state,
        PlanRequest(
            resume=True,
            failed_only=request.failed_only,
            from_jobs=request.from_jobs,
            rerun=frozenset(verdict.rerun),
            new_jobs=frozenset(workflow.jobs) - frozenset(previous.jobs),
        ),
    )
    return workflow, verdict, the_plan


def _drive(
    ctx: Context,
    start: AttemptStart,
    handle: RunHandle,
    max_parallel: int | None,
    reporter: Reporter | None,
    on_start: Hook | None,
) -> AttemptOutcome:
    caps = [
        c for c in (max_parallel or ctx.default_parallelism(start.executor), start.workflow.max_parallel) if c
    ]
    parallel = min(caps) if caps else None
    executor = ctx.executor(start.executor, parallel or 1)
    executor.check()
    coordinator = Coordinator(
        start=start,
        executor=executor,
        handle=handle,
        recorder=AttemptRecorder(ctx.engine, flush_interval=ctx.settings.flush_interval),
        reporter=reporter,
        max_in_flight=executor.dispatch_limit(parallel),
        history_patience=ctx.settings.history_patience,
    )
    if on_start is not None:
        on_start(coordinator)

    def ids() -> tuple[int | None, int | None]:
        return coordinator.recorder.run_id, coordinator.recorder.attempt_id

    with CancelWatch(ctx.engine, ids, coordinator.request_cancel):  # `executioner cancel`
        outcome = coordinator.run()
    outcome.inputs = start.inputs
    if outcome.run_id is not None:  # its alerts now; what cannot be sent waits for the next pass
        deliver(ctx.engine, run_id=outcome.run_id, budget=NOTIFY_BUDGET)
    return outcome
