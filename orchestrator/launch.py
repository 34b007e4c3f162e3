"""``run`` and ``resume``: validate, plan, then hand the attempt to a coordinator.

Refusals (bad workflow, unknown ids, refused changes, a held lock, nothing to do) happen before the
attempt exists, so they write nothing; the attempt row appears with its first dispatched job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from orchestrator.changes import Verdict, diff_workflows, judge_changes
from orchestrator.context import Context
from orchestrator.coordinator import AttemptOutcome, Coordinator
from orchestrator.db.engine import read_tx
from orchestrator.db.queries import RunRecord, get_run, load_run
from orchestrator.db.recorder import AttemptRecorder, AttemptStart
from orchestrator.errors import RefusedError, UserError
from orchestrator.loader import load_workflow, workflow_from_data
from orchestrator.locks.base import LockOwner, RunHandle
from orchestrator.planner import Plan, PlanRequest, plan
from orchestrator.reporting import Reporter
from orchestrator.settle import load_settled
from orchestrator.state import RunState
from orchestrator.workflow import Workflow


@dataclass(slots=True)
class RunRequest:
    workflow_path: str
    from_jobs: tuple[str, ...] = ()
    executor: str | None = None
    max_parallel: int | None = None
    dry_run: bool = False
    triggered_by: str = "cli"
    trigger_reason: str = "run"


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


@dataclass(slots=True)
class DryRun:
    plan: Plan | None
    verdict: Verdict | None = None
    errors: list[str] = field(default_factory=list)
    run_id: int | None = None
    attempt_id: int | None = None

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
        }


@dataclass(slots=True)
class NothingToDo:
    """A resume whose plan runs no job: no attempt is written (no ghost attempts)."""

    run_id: int
    status: str  # the run's status, that of its latest attempt
    state: RunState
    plan: Plan


Hook = Callable[[Coordinator], None]


def start_run(
    ctx: Context, request: RunRequest, reporter: Reporter | None = None, on_start: Hook | None = None
) -> AttemptOutcome | DryRun:
    if request.dry_run:
        try:
            workflow = load_workflow(request.workflow_path)
            return DryRun(plan(workflow, RunState(), PlanRequest(from_jobs=request.from_jobs)))
        except UserError as exc:
            return DryRun(None, errors=exc.lines())
    workflow = load_workflow(request.workflow_path)
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
        request={
            "command": "run",
            "from_jobs": list(request.from_jobs),
            "max_parallel": request.max_parallel,
        },
    )
    # The lock is taken in the transaction that creates the run (at its first dispatch).
    with RunHandle(ctx.locks, owner) as handle:
        return _drive(ctx, start, handle, request.max_parallel, reporter, on_start)


def resume_run(
    ctx: Context, request: ResumeRequest, reporter: Reporter | None = None, on_start: Hook | None = None
) -> AttemptOutcome | DryRun | NothingToDo:
    if request.dry_run:
        with read_tx(ctx.engine) as conn:
            record = load_run(conn, request.run_id)  # unknown run: exit 2
        try:
            given = load_workflow(request.workflow_path) if request.workflow_path else None
            workflow, verdict, the_plan = _plan_resume(record, given, request)
        except UserError as exc:
            return DryRun(None, errors=exc.lines(), run_id=record.run_id)
        return DryRun(the_plan, verdict, verdict.refusal_lines(), record.run_id, record.next_attempt_id)
    with read_tx(ctx.engine) as conn:
        run = get_run(conn, request.run_id)  # unknown run: exit 2 before anything else
    given = load_workflow(request.workflow_path) if request.workflow_path else None
    owner = LockOwner("resume")
    with RunHandle(ctx.locks_for(run), owner, request.run_id).acquire() as handle:
        record = load_settled(ctx, handle)
        workflow, verdict, the_plan = _plan_resume(record, given, request)
        if not verdict.ok:
            raise RefusedError(
                f"resume of run {request.run_id} refused: the workflow changed "
                f"({len(verdict.refused)} difference(s) not allowed)",
                verdict.refusal_lines(),
            )
        if the_plan.nothing_to_do:
            return NothingToDo(request.run_id, record.last_attempt.status, record.state, the_plan)
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
        )
        return _drive(ctx, start, handle, request.max_parallel, reporter, on_start)


def stored_workflow(record: RunRecord) -> Workflow:
    if record.last_snapshot is None:
        raise UserError(f"run {record.run_id} has no attempt to take a workflow from")
    return workflow_from_data(
        record.last_snapshot, f"run {record.run_id} attempt {record.last_attempt.attempt_id}"
    )


def _plan_resume(
    record: RunRecord, given: Workflow | None, request: ResumeRequest
) -> tuple[Workflow, Verdict, Plan]:
    previous = stored_workflow(record)
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
    return coordinator.run()
