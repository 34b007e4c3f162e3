"""``mark-success`` and ``rollback``: audit records under the run's lock, no attempt created."""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.context import Context
from orchestrator.dag import Dag
from orchestrator.db.audit import record_action
from orchestrator.db.engine import read_tx, write_tx
from orchestrator.db.fencing import check_epoch
from orchestrator.db.queries import RunRecord, get_run, load_run
from orchestrator.errors import RefusedError, UnknownJobError
from orchestrator.locks.base import LockOwner, RunHandle
from orchestrator.settle import load_settled
from orchestrator.state import AuditAction, JobState
from orchestrator.stored import stored_workflow
from workers.statuses import AttemptStatus, JobStatus


@dataclass(slots=True)
class ManualResult:
    run_id: int
    action: AuditAction
    job_ids: list[str]  # the jobs whose effective state it changed
    unchanged: list[str] = field(default_factory=list)  # already so: repeating an action is a no-op
    dry_run: bool = False  # what it would change; nothing was written and no lock was taken

    def as_dict(self) -> dict:
        out = {
            "run_id": self.run_id,
            "action": str(self.action),
            "jobs": self.job_ids,
            "unchanged": self.unchanged,
        }
        if self.dry_run:
            out["dry_run"] = True
        return out


def mark_success(
    ctx: Context,
    run_id: int,
    job_ids: list[str],
    *,
    with_upstream: bool = False,
    force: bool = False,
    dry_run: bool = False,
    owner: LockOwner | None = None,
) -> ManualResult:
    def choose(record: RunRecord, dag: Dag) -> list[str]:
        upstream = dag.ancestors(job_ids)
        unsatisfied = [a for a in dag.order if a in upstream and not record.state.is_success(a)]
        if unsatisfied and not (with_upstream or force):
            raise RefusedError(
                f"mark-success refused: {len(unsatisfied)} upstream job(s) of "
                f"{', '.join(job_ids)} are not effectively SUCCESS "
                "(use --with-upstream to mark them too, or --force)",
                [f"job {a!r}: {record.state[a].status}" for a in unsatisfied],
            )
        chosen = set(job_ids) | (set(unsatisfied) if with_upstream else set())
        return [j for j in dag.order if j in chosen]

    details = {"with_upstream": with_upstream, "force": force, "requested": list(job_ids)}
    action = _Action(AuditAction.MARK_SUCCESS, owner or LockOwner("mark-success"), details, dry_run)
    return _act(ctx, run_id, job_ids, action, choose)


def rollback(
    ctx: Context, run_id: int, job_id: str, *, dry_run: bool = False, owner: LockOwner | None = None
) -> ManualResult:
    def choose(record: RunRecord, dag: Dag) -> list[str]:
        chosen = dag.with_descendants([job_id])
        return [j for j in dag.order if j in chosen]

    action = _Action(AuditAction.ROLLBACK, owner or LockOwner("rollback"), {"requested": [job_id]}, dry_run)
    return _act(ctx, run_id, [job_id], action, choose)


@dataclass(frozen=True, slots=True)
class _Action:
    kind: AuditAction
    owner: LockOwner  # who acts (the OS user, or the web view's signed-in user), recorded as actor
    details: dict
    dry_run: bool


def _act(ctx: Context, run_id: int, job_ids: list[str], action: _Action, choose) -> ManualResult:
    what = action.owner.what
    if action.dry_run:  # read-only: no lock, nothing written (the web view's preview, --dry-run)
        with read_tx(ctx.engine) as conn:
            record = load_run(conn, run_id)
        if record.last_attempt is None or record.last_attempt.status == AttemptStatus.RUNNING:
            raise RefusedError(f"{what} refused: run {run_id} is running; wait for it or cancel it")
        return _choose(record, run_id, job_ids, action, choose)
    with read_tx(ctx.engine) as conn:
        run = get_run(conn, run_id)
    with RunHandle(ctx.locks_for(run), action.owner, run_id).acquire() as handle:
        record = load_settled(ctx, handle, wait=False)
        if record.last_attempt.status == AttemptStatus.RUNNING:
            raise RefusedError(
                f"{what} refused: run {run_id} attempt {record.last_attempt.attempt_id} lost its "
                "coordinator but still has jobs running on workers; `resume` waits for them"
            )
        result = _choose(record, run_id, job_ids, action, choose)
        if not result.job_ids:
            return result
        with write_tx(ctx.engine) as conn:
            check_epoch(conn, run_id, handle.epoch)
            record_action(
                conn,
                run_id=run_id,
                action=action.kind,
                job_ids=result.job_ids,
                actor=action.owner.actor,
                after_attempt=record.last_attempt.attempt_id,
                attempt_id=None,
                details=action.details,
            )
    return result


def _choose(record: RunRecord, run_id: int, job_ids: list[str], action: _Action, choose) -> ManualResult:
    workflow = stored_workflow(record)
    unknown = [j for j in job_ids if j not in workflow.jobs]
    if unknown:
        raise UnknownJobError(run_id, unknown)
    chosen = choose(record, workflow.dag)
    # Idempotent: a job already marked SUCCESS (or already PENDING, for a rollback) is left as
    # it is and not recorded again; an action that changes nothing writes nothing.
    done = [j for j in chosen if _already(record.state[j], action.kind)]
    chosen = [j for j in chosen if j not in done]
    return ManualResult(run_id, action.kind, chosen, done, dry_run=action.dry_run)


def _already(state: JobState, action: AuditAction) -> bool:
    if action is AuditAction.MARK_SUCCESS:
        return state.marked and state.is_success
    return state.status is JobStatus.PENDING
