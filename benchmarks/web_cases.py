"""The web view's server time: the runs list over 10,000 runs and the page of a 2,000-job run.

Each page is requested in-process through the ASGI app and timed inside it (routing, auth, queries,
template, until the last byte is handed to the server: what the server spends; no network, not the
test client's parsing), beside the same data through the CLI as a user runs it (``runs --json``,
``status --json``: interpreter start included). Target: each page in <= 300 ms on the server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

from sqlalchemy import insert, select

from benchmarks import workflows
from benchmarks.cli_runs import history_env
from benchmarks.harness import CaseResult, fresh_context
from orchestrator.coordinator import Coordinator
from orchestrator.db.recorder import AttemptRecorder, AttemptStart
from orchestrator.db.schema import attempts, job_runs, runs
from orchestrator.executors.stub import StubExecutor
from orchestrator.loader import load_workflow
from orchestrator.locks.base import LockOwner, RunHandle
from orchestrator.planner import PlanRequest, plan
from orchestrator.state import RunState
from workers.statuses import JobStatus

TARGET = 0.300
CLI = [sys.executable, "-m", "orchestrator.cli"]


def _record_run(ctx, path: Path, fail_every: int = 0) -> int:
    """One real attempt through the coordinator and recorder (a stub executor: no processes)."""
    workflow = load_workflow(path)
    order = workflow.dag.order

    def outcome(task):
        if fail_every and order.index(task.job_id) % fail_every == fail_every - 1:
            return JobStatus.FAILED, 1
        return JobStatus.SUCCESS, 0

    start = AttemptStart(
        workflow, plan(workflow, RunState(), PlanRequest()), LockOwner("bench"), "stub", attempt_id=1
    )
    with RunHandle(ctx.locks, LockOwner("bench")) as handle:
        coordinator = Coordinator(
            start=start, executor=StubExecutor(outcome), handle=handle, recorder=AttemptRecorder(ctx.engine)
        )
        return coordinator.run().run_id


def _clone_runs(ctx, template_run: int, copies: int) -> None:
    """``copies`` more runs shaped like ``template_run`` (rows copied in bulk: recording 10,000 runs one
    by one would take minutes and measure nothing the page does)."""
    with ctx.engine.begin() as conn:
        run = conn.execute(select(runs).where(runs.c.run_id == template_run)).one()._asdict()
        attempt = conn.execute(select(attempts).where(attempts.c.run_id == template_run)).one()._asdict()
        jobs = [r._asdict() for r in conn.execute(select(job_runs).where(job_runs.c.run_id == template_run))]
        top = conn.execute(select(runs.c.run_id).order_by(runs.c.run_id.desc()).limit(1)).scalar()
        statuses = ["SUCCESS"] * 8 + ["FAILED", "PARTIAL"]
        for lo in range(0, copies, 1000):
            ids = range(top + 1 + lo, top + 1 + min(lo + 1000, copies))
            conn.execute(insert(runs), [{**run, "run_id": i, "application_name": f"app{i % 7}"} for i in ids])
            conn.execute(
                insert(attempts),
                [{**attempt, "run_id": i, "status": statuses[i % len(statuses)]} for i in ids],
            )
            conn.execute(insert(job_runs), [{**j, "run_id": i} for i in ids for j in jobs])


class ServerClock:
    """ASGI middleware timing what the server spends on a request: from the call until the last
    byte of the body is handed to the server (the test client's own work on 1 MB of HTML is not)."""

    def __init__(self, app) -> None:
        self.app = app
        self.last = 0.0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed_send(message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.last = time.perf_counter() - start

        await self.app(scope, receive, timed_send)


def _timed_get(client, clock: ServerClock, path: str, auth, repeat: int) -> tuple[float, list[float]]:
    """The first request (templates compiled, the attempt's workflow parsed and laid out: a run's
    first view), then ``repeat`` more (a refresh, another viewer): server time of each."""
    client.get(path, auth=auth)
    first = clock.last
    out = []
    for _ in range(repeat):
        response = client.get(path, auth=auth)
        out.append(clock.last)
        assert response.status_code == 200, response.text[:300]
    return first, out


def _timed_cli(env: dict, args: list[str], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([*CLI, *args], env=env, check=True, stdout=subprocess.DEVNULL)
        out.append(time.perf_counter() - start)
    return out


def web_pages(scratch: Path, n_runs: int, n_jobs: int, repeat: int) -> list[CaseResult]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    from orchestrator.web.app import WebSettings, create_app
    from orchestrator.web.auth import WebAuth

    small = workflows.write(scratch / "small.json", workflows.chain(3))
    big = workflows.write(scratch / "big.json", workflows.random_dag(n_jobs), name="big")
    with fresh_context() as ctx:
        template = _record_run(ctx, small)
        _clone_runs(ctx, template, n_runs - 2)
        big_run = _record_run(ctx, big, fail_every=50)  # a failed job in fifty: red nodes, tails shown
        auth = WebAuth.configure("bench:bench-password", None, False, "127.0.0.1", None)
        clock = ServerClock(create_app(WebSettings(ctx.settings, auth)))
        env = {**os.environ, **history_env(ctx.settings.home, ctx.settings.database_url)}
        creds = ("bench", "bench-password")
        with TestClient(clock) as client:
            _, runs_page = _timed_get(client, clock, "/", creds, repeat)
            first, run_page = _timed_get(client, clock, f"/runs/{big_run}", creds, repeat)
            _, live = _timed_get(client, clock, f"/runs/{big_run}/live", creds, repeat)
        cli_runs = _timed_cli(env, ["runs", "--json", "--limit", "50"], repeat)
        cli_status = _timed_cli(env, ["status", str(big_run), "--json"], repeat)

    def within(ours: float, _base: float) -> bool:
        return ours <= TARGET

    return [
        CaseResult(
            "web-runs",
            f"s, runs list page over {n_runs} runs (50 shown, counts)",
            runs_page,
            cli_runs,
            "CLI runs --json",
            "<= 0.3 s",
            within,
        ),
        CaseResult(
            "web-run",
            f"s, run page of a {n_jobs}-job run (DAG, jobs, tries)",
            run_page,
            cli_status,
            "CLI status --json",
            "<= 0.3 s",
            within,
            note=f"first view (parse + lay out {n_jobs} jobs) {first:.3f} s; its live refresh "
            f"{min(live):.3f}-{max(live):.3f} s when something changed",
        ),
    ]
