"""The local executor against what the OS does: `xargs -P2`, and a plain sequential spawn loop."""

from __future__ import annotations

import subprocess
from pathlib import Path

from benchmarks import workflows
from benchmarks.harness import CaseResult, fresh_context, run_timed, timed
from orchestrator.launch import RunRequest


def local_wide(scratch: Path, n: int, repeat: int) -> CaseResult:
    path = workflows.write(scratch / "wide.json", workflows.wide(n))
    commands = "true\n" * n
    ours, base = [], []
    for _ in range(repeat):
        base.append(
            timed(
                lambda: subprocess.run(
                    ["xargs", "-P2", "-I{}", "/bin/sh", "-c", "{}"], input=commands, text=True, check=True
                )
            )
        )
        with fresh_context() as ctx:
            ours.append(run_timed(ctx, RunRequest(str(path), executor="local", max_parallel=2)))
    return CaseResult(
        "local-wide",
        f"wall s, {n} jobs, 2 parallel",
        ours,
        base,
        "xargs -P2",
        "ratio <= 1.5",
        lambda o, b: o <= 1.5 * b,
    )


def local_chain(scratch: Path, n: int, repeat: int) -> CaseResult:
    path = workflows.write(scratch / "chain.json", workflows.chain(n))

    def spawn_loop() -> None:
        for _ in range(n):
            subprocess.run(["/bin/sh", "-c", "true"], check=True)

    ours, base = [], []
    for _ in range(repeat):
        base.append(timed(spawn_loop) / n * 1000)
        with fresh_context() as ctx:
            ours.append(run_timed(ctx, RunRequest(str(path), executor="local", max_parallel=1)) / n * 1000)
    result = CaseResult(
        "local-chain",
        f"ms per hop, {n} jobs",
        ours,
        base,
        "sequential spawn loop",
        "ours - baseline <= 2 ms",
        lambda o, b: o - b <= 2.0,
    )
    result.note = f"overhead {result.ours_median - result.baseline_median:.3f} ms per hop"
    return result
