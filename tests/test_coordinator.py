"""The coordinator, history and lease together, with the stub executor: no processes, no sleeps."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, select, update

from orchestrator.context import Context
from orchestrator.coordinator import Coordinator
from orchestrator.db.engine import read_tx, write_tx
from orchestrator.db.queries import job_history, load_run
from orchestrator.db.recorder import AttemptRecorder, AttemptStart
from orchestrator.db.schema import attempts, run_leases, utcnow
from orchestrator.errors import FencedError, LockedError
from orchestrator.executors.stub import StubExecutor
from orchestrator.loader import workflow_from_data
from orchestrator.locks.base import LockOwner, RunHandle
from orchestrator.planner import PlanRequest, plan
from orchestrator.settings import Settings
from orchestrator.state import RunState
from workers.statuses import AttemptStatus, JobStatus


@pytest.fixture
def ctx(tmp_path, database_url):  # SQLite and PostgreSQL
    c = Context(Settings.from_env({}, home=tmp_path, database_url=database_url))
    yield c
    c.close()


def workflow(edges: dict[str, list[str]]):
    return workflow_from_data(
        {
            "application_name": "app",
            "jobs": [{"id": j, "command": "true", "dependencies": d} for j, d in edges.items()],
        }
    )


def run_attempt(ctx, wf, outcome, *, request=None, state=None, run_id=None, attempt_id=1):
    request, state = request or PlanRequest(), state or RunState()
    start = AttemptStart(
        wf,
        plan(wf, state, request),
        LockOwner("test"),
        "stub",
        run_id=run_id,
        attempt_id=attempt_id,
        parent_attempt_id=attempt_id - 1 or None,
    )
    executor = StubExecutor(outcome)
    with RunHandle(ctx.locks, LockOwner("test"), run_id) as handle:
        if run_id is not None:
            handle.acquire()  # a resume holds the run before it plans
        coordinator = Coordinator(
            start=start, executor=executor, handle=handle, recorder=AttemptRecorder(ctx.engine)
        )
        result = coordinator.run()
    return result, executor


def fail(*names):
    return lambda task: (JobStatus.FAILED, 1) if task.job_id in names else (JobStatus.SUCCESS, 0)


DAG = {"a": [], "b": ["a"], "c": ["b"], "side": ["a"], "lone": []}


def test_failure_marks_descendants_and_independent_branches_finish(ctx):
    result, executor = run_attempt(ctx, workflow(DAG), fail("b"))
    statuses = {j: o.status for j, o in result.jobs.items()}
    assert statuses == {
        "a": JobStatus.SUCCESS,
        "b": JobStatus.FAILED,
        "c": JobStatus.UPSTREAM_FAILED,
        "side": JobStatus.SUCCESS,
        "lone": JobStatus.SUCCESS,
    }
    assert "c" not in [t.job_id for t in executor.submitted]
    assert result.status is AttemptStatus.FAILED and result.exit_code == 1
    assert (result.totals.successful_jobs, result.totals.failed_jobs, result.totals.skipped_jobs) == (3, 1, 1)
    with read_tx(ctx.engine) as conn:
        rows = {r["job_id"]: r for r in job_history(conn, result.run_id)}
    assert rows["c"]["status"] == "UPSTREAM_FAILED" and "upstream 'b'" in rows["c"]["detail"]
    assert [t["status"] for t in rows["b"]["retry_history"]] == ["FAILED"]
    assert ctx.locks.holder(result.run_id) is None  # released at the end


def test_resume_writes_attempt_two_and_runs_only_what_is_left(ctx):
    wf = workflow(DAG)
    first, _ = run_attempt(ctx, wf, fail("b"))
    with read_tx(ctx.engine) as conn:
        record = load_run(conn, first.run_id)
    second, executor = run_attempt(
        ctx,
        wf,
        fail(),
        request=PlanRequest(resume=True),
        state=record.state,
        run_id=first.run_id,
        attempt_id=2,
    )
    assert [t.job_id for t in executor.submitted] == ["b", "c"]
    assert second.status is AttemptStatus.SUCCESS and second.totals.successful_jobs == 5
    with read_tx(ctx.engine) as conn:
        record = load_run(conn, first.run_id)
    assert [a.attempt_id for a in record.attempts] == [1, 2]
    assert all(record.state.is_success(j) for j in DAG)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_dags_follow_the_dependency_rule(ctx, data):
    n = data.draw(st.integers(1, 12))
    ids = [f"j{i}" for i in range(n)]
    edges = {
        j: sorted(data.draw(st.sets(st.sampled_from(ids[:i]), max_size=3))) if i else []
        for i, j in enumerate(ids)
    }
    failing = data.draw(st.sets(st.sampled_from(ids)))
    result, executor = run_attempt(ctx, workflow(edges), fail(*failing))
    ran = {t.job_id for t in executor.submitted}
    for job, deps in edges.items():
        status = result.jobs[job].status
        if all(result.jobs[d].status is JobStatus.SUCCESS for d in deps):
            assert job in ran and status is (JobStatus.FAILED if job in failing else JobStatus.SUCCESS)
        else:
            assert job not in ran and status is JobStatus.UPSTREAM_FAILED


def test_a_coordinator_whose_lock_was_taken_over_is_fenced(ctx):
    wf = workflow({"a": [], "b": ["a"], "c": ["b"]})
    stolen = {}

    def steal_when_b_runs(task):
        if task.job_id == "b":  # the lease expires (a long pause) and another process takes the run
            with write_tx(ctx.engine) as conn:
                conn.execute(update(run_leases).values(expires_at=utcnow()))
            stolen["lock"] = ctx.locks.acquire(task.run_id, LockOwner("intruder"))
        return JobStatus.SUCCESS, 0

    with pytest.raises(FencedError):
        run_attempt(ctx, wf, steal_when_b_runs)
    stolen["lock"].release()


def test_a_live_lease_refuses_a_second_holder_naming_the_first(ctx):
    wf = workflow({"a": []})
    result, _ = run_attempt(ctx, wf, fail())
    lock = ctx.locks.acquire(result.run_id, LockOwner("resume"))
    with pytest.raises(LockedError) as info:
        ctx.locks.acquire(result.run_id, LockOwner("mark-success"))
    message = str(info.value)
    assert f"run {result.run_id} is locked by" in message and "pid" in message and "(resume)" in message
    lock.release()
    ctx.locks.acquire(result.run_id, LockOwner("mark-success")).release()


def test_an_expired_lease_is_taken_over_and_bumps_the_epoch(ctx):
    result, _ = run_attempt(ctx, workflow({"a": []}), fail())
    first = ctx.locks.acquire(result.run_id, LockOwner("one"))
    with write_tx(ctx.engine) as conn:
        conn.execute(update(run_leases).values(expires_at=utcnow()))
    assert ctx.locks.holder(result.run_id) is None
    second = ctx.locks.acquire(result.run_id, LockOwner("two"))
    assert second.epoch == first.epoch + 1
    with pytest.raises(FencedError):
        first.extend()
    second.release()
    first.release()  # a no-op: it no longer owns the row
    assert ctx.locks.holder(result.run_id) is None


def test_the_resume_plan_reads_each_table_once(ctx):
    wf = workflow(DAG)
    first, _ = run_attempt(ctx, wf, fail("b"))
    statements: list[str] = []
    event.listen(ctx.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with read_tx(ctx.engine) as conn:
        load_run(conn, first.run_id)
    tables = [s.split("FROM")[1].split()[0] for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert sorted(tables) == ["attempt_snapshots", "attempts", "audit_events", "job_runs", "runs"], statements


def test_the_snapshot_is_kept_beside_the_attempt_row_not_in_it(ctx):
    """The attempt's row is rewritten when it ends (SQLite rewrites whole rows): its snapshot is not
    in it, and reads back exactly as the workflow's."""
    from orchestrator.db.schema import attempt_snapshots

    wf = workflow(DAG)
    first, _ = run_attempt(ctx, wf, fail("b"))
    with read_tx(ctx.engine) as conn:
        inline = conn.execute(select(attempts.c.workflow_snapshot)).scalar_one()
        beside = conn.execute(select(attempt_snapshots.c.snapshot)).scalar_one()
        record = load_run(conn, first.run_id)
    assert inline is None and beside == wf.snapshot() == record.last_snapshot


def test_history_batches_are_flushed_at_the_end(ctx):
    wide = {f"j{i}": [] for i in range(300)}
    result, _ = run_attempt(ctx, workflow(wide), fail("j7"))
    with read_tx(ctx.engine) as conn:
        rows = job_history(conn, result.run_id)
        status = conn.execute(select(attempts.c.status)).scalar_one()
    assert len(rows) == 300 and all(len(r["retry_history"]) == 1 for r in rows)
    assert status == AttemptStatus.FAILED


def test_changes_whose_commit_failed_are_written_by_the_next_flush(ctx):
    """The database gone at the moment of commit (PostgreSQL paused, SQLite busy): the batch was
    rolled back, so the recorder must still hold it. It forgot it before the commit, so a job that
    had ended stayed PENDING in the history of a run that ended SUCCESS."""
    from sqlalchemy.exc import OperationalError

    from workers.statuses import JobStatus as Status

    wf = workflow({"a": []})
    start = AttemptStart(wf, plan(wf, RunState(), PlanRequest()), LockOwner("test"), "stub")
    recorder = AttemptRecorder(ctx.engine)
    with RunHandle(ctx.locks, LockOwner("test")) as handle:
        recorder.begin(start, handle, ctx.locks.kind, ctx.locks.servers)
        recorder.job_update("a", status=Status.SUCCESS, exit_code=0)
        failures = [OperationalError("COMMIT", {}, Exception("server gone"))]

        def commit(conn):
            if failures:
                raise failures.pop()

        event.listen(ctx.engine, "commit", commit)
        try:
            with pytest.raises(OperationalError):
                recorder.flush()
            assert recorder.pending  # kept for the next flush
            recorder.flush()
        finally:
            event.remove(ctx.engine, "commit", commit)
    with read_tx(ctx.engine) as conn:
        rows = job_history(conn, recorder.run_id)
    assert [(r["job_id"], r["status"], r["exit_code"]) for r in rows] == [("a", "SUCCESS", 0)]


def test_a_long_dispatch_gives_way_to_renewing_the_lock(ctx, monkeypatch):
    """20,000 ready jobs take a broker tens of seconds to accept: longer than the run's lock lives.
    The loop must renew between slices of the dispatch, not after it (a Redlock that expired
    meanwhile is lost for good)."""
    import time

    monkeypatch.setattr("orchestrator.coordinator.DISPATCH_SLICE_SECONDS", 0.02)
    seen: list[str] = []

    def slow_publish(task):
        seen.append("submit")
        time.sleep(0.002)  # a publish; 300 of them outlast several renewal periods
        return JobStatus.SUCCESS, 0

    original = RunHandle.extend

    def extend(self):
        seen.append("extend")
        return original(self)

    monkeypatch.setattr(RunHandle, "extend", extend)
    ctx.settings = Settings.from_env(
        {"EXECUTIONER_LEASE_TTL": "0.15"}, home=ctx.settings.home, database_url=ctx.settings.database_url
    )
    wf = workflow({f"j{i}": [] for i in range(300)})
    result, executor = run_attempt(ctx, wf, slow_publish)
    assert len(executor.submitted) == 300 and result.status is AttemptStatus.SUCCESS
    last_submit = len(seen) - 1 - seen[::-1].index("submit")
    assert seen[:last_submit].count("extend") >= 3, "the lock was not renewed during the dispatch"
