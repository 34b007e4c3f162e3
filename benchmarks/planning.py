"""Planning at scale: a random 10,000-job DAG, fresh and with five attempts of history."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import event

from benchmarks import workflows
from benchmarks.cli_runs import EXECUTIONER, history_env, wall
from benchmarks.harness import CaseResult, fresh_context
from orchestrator.coordinator import Coordinator
from orchestrator.db.recorder import AttemptRecorder, AttemptStart
from orchestrator.executors.stub import StubExecutor
from orchestrator.launch import ResumeRequest, RunRequest, resume_run, start_run
from orchestrator.loader import load_workflow
from orchestrator.locks.base import LockOwner, RunHandle
from orchestrator.planner import PlanRequest, plan
from orchestrator.state import RunState
from workers.statuses import JobStatus


def plan_fresh(scratch: Path, n: int, repeat: int) -> list[CaseResult]:
    """``run --dry-run`` of a random DAG: parse, validate every rule, hash, build the graph, plan;
    in process, and from a shell (interpreter start and printing the plan included)."""
    path = workflows.write(scratch / "big.json", workflows.random_dag(n))
    ours, cli = [], []
    with fresh_context() as ctx:
        shell = history_env(ctx.settings.home, ctx.settings.database_url)
        for _ in range(repeat):
            start = time.perf_counter()
            result = start_run(ctx, RunRequest(str(path), dry_run=True))
            ours.append(time.perf_counter() - start)
            assert result.valid and len(result.plan.will_run) == n
            cli.append(wall([EXECUTIONER, "run", str(path), "--dry-run"], shell))
    return [
        CaseResult(name, metric, values, [], "", "<= 1 s", lambda o, b: o <= 1.0)
        for name, metric, values in (
            ("plan-fresh", f"s, load+validate+plan {n} jobs", ours),
            ("plan-fresh-cli", f"s, executioner run --dry-run, {n} jobs", cli),
        )
    ]


def plan_resume(scratch: Path, n: int, attempts: int, repeat: int) -> list[CaseResult]:
    """A run with ``attempts`` attempts of ``n`` jobs in its history, then ``resume --dry-run``."""
    path = workflows.write(scratch / "big.json", workflows.random_dag(n))
    workflow = load_workflow(path)
    dag = workflow.dag
    ours, statements = [], []
    with fresh_context() as ctx:
        run_id = None
        for attempt in range(1, attempts + 1):
            # Attempt k fails one job in ten (a different tenth each time): history as real runs leave it.
            fail = {j for i, j in enumerate(dag.order) if i % 10 == attempt % 10}

            def outcome(task, fail=fail):
                return (JobStatus.FAILED, 1) if task.job_id in fail else (JobStatus.SUCCESS, 0)

            # --rerun-changed on every job: each attempt runs (and records) all n jobs again, so the
            # resume plan below reads attempts x n outcome rows.
            request = PlanRequest(resume=attempt > 1, rerun=frozenset(workflow.jobs))
            state = RunState() if run_id is None else _state(ctx, run_id)
            start = AttemptStart(
                workflow,
                plan(workflow, state, request),
                LockOwner("bench"),
                "stub",
                run_id=run_id,
                attempt_id=attempt,
            )
            with RunHandle(ctx.locks, LockOwner("bench"), run_id) as handle:
                if run_id is not None:
                    handle.acquire()
                coordinator = Coordinator(
                    start=start,
                    executor=StubExecutor(outcome),
                    handle=handle,
                    recorder=AttemptRecorder(ctx.engine),
                )
                run_id = coordinator.run().run_id
        counted: list[str] = []
        event.listen(ctx.engine, "before_cursor_execute", lambda *a: counted.append(a[2]))
        cli: list[float] = []
        shell = history_env(ctx.settings.home, ctx.settings.database_url)
        for _ in range(repeat):
            counted.clear()
            start_time = time.perf_counter()
            result = resume_run(ctx, ResumeRequest(run_id, dry_run=True))
            ours.append(time.perf_counter() - start_time)
            assert result.valid and result.plan.will_run
            statements.append(len([s for s in counted if s.lstrip().upper().startswith("SELECT")]))
            cli.append(wall([EXECUTIONER, "resume", str(run_id), "--dry-run"], shell))
    case, from_shell = (
        CaseResult(name, metric, values, [], "", "<= 1 s", lambda o, b: o <= 1.0)
        for name, metric, values in (
            ("plan-resume", f"s, resume plan, {attempts} attempts x {n} jobs", ours),
            ("plan-resume-cli", f"s, executioner resume --dry-run, {attempts} attempts x {n} jobs", cli),
        )
    )
    case.note = (
        f"{statements[-1]} SELECT statements (one per table: runs, attempts, attempt_snapshots, "
        "job_runs, audit_events)"
    )
    return [case, from_shell]


def _state(ctx, run_id: int) -> RunState:
    from orchestrator.db.engine import read_tx
    from orchestrator.db.queries import load_run

    with read_tx(ctx.engine) as conn:
        return load_run(conn, run_id).state
