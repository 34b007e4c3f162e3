"""The Celery executor against what a user would write instead: a plain Celery group / round trip
(``benchmarks.raw_celery``: Celery's defaults plus acks late and prefetch 1), without task events (a)
and with them (b). Ours is measured in-process and through the CLI as users run it."""

from __future__ import annotations

import gc
import time
from pathlib import Path

from celery import group

from benchmarks import workflows
from benchmarks.cli_runs import cli_run_wall
from benchmarks.harness import CaseResult, fresh_context, run_timed
from benchmarks.raw_celery import QUEUES, create_raw_app
from benchmarks.servers import Stack, flower_watching
from orchestrator.launch import RunRequest


def _ours(stack: Stack, path: Path) -> float:
    with fresh_context(broker_url=stack.broker) as ctx:
        return run_timed(ctx, RunRequest(str(path), executor="celery"))


def _raw_group(stack: Stack, n: int, events: bool) -> float:
    """Jobs per second of a plain Celery group of ``n`` tasks, results through the Redis backend."""
    app = create_raw_app(stack.broker, stack.backend, events)
    task = app.tasks["raw.run"]
    start = time.perf_counter()
    results = group(task.s("true") for _ in range(n)).apply_async(queue=QUEUES[events])
    assert results.get(timeout=600) == [0] * n
    rate = n / (time.perf_counter() - start)
    results.forget()
    del results
    gc.collect()  # let Celery unsubscribe its result listeners now, not at interpreter exit
    return rate


def celery_wide(stack: Stack, scratch: Path, n: int, repeat: int) -> list[CaseResult]:
    path = workflows.write(scratch / "cwide.json", workflows.wide(n))
    one = workflows.write(scratch / "cwide1.json", workflows.wide(1))
    env = {"EXECUTIONER_BROKER_URL": stack.broker}
    ours, cli, plain, with_events, watched, watched_raw = [], [], [], [], [], []
    for _ in range(repeat):
        plain.append(_raw_group(stack, n, events=False))
        with_events.append(_raw_group(stack, n, events=True))
        ours.append(n / _ours(stack, path))
        # Through the CLI, net of a 1-job run: the rate once the interpreter and the run are up.
        cli.append(n / max(cli_run_wall(path, env) - cli_run_wall(one, env), 1e-6))
    with flower_watching(stack):  # last: Flower turns every worker's events on
        for _ in range(repeat):
            watched_raw.append(_raw_group(stack, n, events=True))
            watched.append(n / _ours(stack, path))
    return [
        CaseResult(
            "celery-wide",
            f"jobs/s, {n} jobs, 1 worker x2",
            ours,
            plain,
            "plain Celery group (a)",
            "ratio >= 1.0",
            lambda o, b: o >= 1.0 * b,
        ),
        CaseResult(
            "celery-wide-ev",
            f"jobs/s, {n} jobs, 1 worker x2",
            ours,
            with_events,
            "plain Celery group with events (b)",
            "ratio >= 0.9",
            lambda o, b: o >= 0.9 * b,
            note="no Flower attached",
        ),
        CaseResult(
            "celery-wide-flower",
            f"jobs/s, {n} jobs, 1 worker x2, executioner flower watching",
            watched,
            watched_raw,
            "plain Celery group with events (b), Flower watching",
            "ratio >= 0.9",
            lambda o, b: o >= 0.9 * b,
        ),
        CaseResult(
            "celery-wide-cli",
            f"jobs/s, {n} jobs, executioner run (net of a 1-job run)",
            cli,
            plain,
            "plain Celery group (a)",
            "ratio >= 1.0",
            lambda o, b: o >= 1.0 * b,
        ),
    ]


def celery_chain(stack: Stack, scratch: Path, n: int, repeat: int) -> list[CaseResult]:
    path = workflows.write(scratch / "cchain.json", workflows.chain(n))
    one = workflows.write(scratch / "cchain1.json", workflows.chain(1))
    env = {"EXECUTIONER_BROKER_URL": stack.broker}
    app = create_raw_app(stack.broker, stack.backend)
    task = app.tasks["raw.run"]
    ours, base, cli = [], [], []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(n):
            assert task.apply_async(("true",), queue=QUEUES[False]).get(timeout=60) == 0
        base.append((time.perf_counter() - start) / n * 1000)
        gc.collect()  # as in _raw_group: the results' listeners go now, while Redis still answers
        ours.append(_ours(stack, path) / n * 1000)
        # Through the CLI, net of a 1-job run (as celery-wide-cli): the cost of a hop once it is up.
        cli.append(max(cli_run_wall(path, env) - cli_run_wall(one, env), 1e-6) / (n - 1) * 1000)
    return [
        CaseResult(
            name,
            metric,
            values,
            base,
            "plain Celery dispatch-and-wait (a)",
            "ratio <= 1.25",
            lambda o, b: o <= 1.25 * b,
        )
        for name, metric, values in (
            ("celery-chain", f"ms per hop, {n} jobs", ours),
            ("celery-chain-cli", f"ms per hop, {n} jobs, executioner run (net of a 1-job run)", cli),
        )
    ]
