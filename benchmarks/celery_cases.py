"""The Celery executor against raw Celery on identical worker settings (same run, same machine)."""

from __future__ import annotations

import gc
import time
from pathlib import Path

from celery import group

from benchmarks import workflows
from benchmarks.harness import CaseResult, fresh_context, run_timed
from benchmarks.raw_celery import create_raw_app
from benchmarks.servers import Stack
from orchestrator.launch import RunRequest


def _ours(stack: Stack, path: Path) -> float:
    with fresh_context(broker_url=stack.broker) as ctx:
        return run_timed(ctx, RunRequest(str(path), executor="celery"))


def celery_wide(stack: Stack, scratch: Path, n: int, repeat: int) -> CaseResult:
    path = workflows.write(scratch / "cwide.json", workflows.wide(n))
    app = create_raw_app(stack.broker, stack.backend)
    task = app.tasks["raw.run"]
    ours, base = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        results = group(task.s("true") for _ in range(n)).apply_async(queue="raw")
        assert results.get(timeout=600) == [0] * n
        base.append(n / (time.perf_counter() - start))
        results.forget()
        del results
        gc.collect()  # let Celery unsubscribe its result listeners now, not at interpreter exit
        ours.append(n / _ours(stack, path))
    return CaseResult(
        "celery-wide",
        f"jobs/s, {n} jobs, 1 worker x2",
        ours,
        base,
        "raw Celery group",
        "ratio >= 0.9",
        lambda o, b: o >= 0.9 * b,
    )


def celery_chain(stack: Stack, scratch: Path, n: int, repeat: int) -> CaseResult:
    path = workflows.write(scratch / "cchain.json", workflows.chain(n))
    app = create_raw_app(stack.broker, stack.backend)
    task = app.tasks["raw.run"]
    ours, base = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(n):
            assert task.apply_async(("true",), queue="raw").get(timeout=60) == 0
        base.append((time.perf_counter() - start) / n * 1000)
        ours.append(_ours(stack, path) / n * 1000)
    return CaseResult(
        "celery-chain",
        f"ms per hop, {n} jobs",
        ours,
        base,
        "raw Celery dispatch-and-wait",
        "ratio <= 1.25",
        lambda o, b: o <= 1.25 * b,
    )
