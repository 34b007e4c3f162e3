"""The local executor against what the OS does: `xargs -P2`, and a plain sequential spawn loop."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import workflows
from benchmarks.cli_runs import EXECUTIONER, cli_run_wall, history_env, wall, xargs
from benchmarks.harness import CaseResult, fresh_context, run_timed, timed
from orchestrator.launch import RunRequest


def local_wide(scratch: Path, n: int, repeat: int) -> list[CaseResult]:
    path = workflows.write(scratch / "wide.json", workflows.wide(n))
    commands = "true\n" * n
    ours, cli, base = [], [], []
    for _ in range(repeat):
        base.append(timed(lambda: xargs(commands, 2)))
        with fresh_context() as ctx:
            ours.append(run_timed(ctx, RunRequest(str(path), executor="local", max_parallel=2)))
        cli.append(cli_run_wall(path, None, "--max-parallel", "2"))  # as a user runs it: end to end
    return [
        CaseResult(
            "local-wide",
            f"wall s, {n} jobs, 2 parallel, in-process",
            ours,
            base,
            "xargs -P2",
            "ratio <= 1.5",
            lambda o, b: o <= 1.5 * b,
        ),
        CaseResult(
            "local-wide-cli",
            f"wall s, {n} jobs, executioner run --max-parallel 2",
            cli,
            base,
            "xargs -P2",
            "ratio <= 1.5",
            lambda o, b: o <= 1.5 * b,
        ),
    ]


def cli_reads(scratch: Path, repeat: int) -> list[CaseResult]:
    """``status`` and ``runs`` of a small run, wall time from a shell, beside the interpreter
    importing SQLAlchemy (what any command reading the history must load)."""
    path = workflows.write(scratch / "small.json", workflows.chain(3))
    base, status, listing = [], [], []
    with tempfile.TemporaryDirectory() as home:
        env = history_env(home)
        wall([EXECUTIONER, "run", str(path)], env)
        # Half a second each and noisy: more rounds than the long cases, interleaved.
        for _ in range(1 if repeat == 1 else max(11, repeat)):
            base.append(wall([sys.executable, "-c", "import sqlalchemy"]))
            status.append(wall([EXECUTIONER, "status", "1", "--json"], env))
            listing.append(wall([EXECUTIONER, "runs", "--json"], env))
    return [
        CaseResult(
            name,
            "wall s, from a shell",
            ours,
            base,
            'python -c "import sqlalchemy"',
            "ratio <= 1.3",
            lambda o, b: o <= 1.3 * b,
        )
        for name, ours in (("cli-status", status), ("cli-runs", listing))
    ]


def local_chain(scratch: Path, n: int, repeat: int) -> list[CaseResult]:
    path = workflows.write(scratch / "chain.json", workflows.chain(n))
    one = workflows.write(scratch / "chain1.json", workflows.chain(1))
    commands = "true\n" * n

    def spawn_loop() -> None:
        for _ in range(n):
            subprocess.run(["/bin/sh", "-c", "true"], check=True)

    ours, base, cli, shell = [], [], [], []
    for _ in range(repeat):
        base.append(timed(spawn_loop) / n * 1000)
        with fresh_context() as ctx:
            ours.append(run_timed(ctx, RunRequest(str(path), executor="local", max_parallel=1)) / n * 1000)
        # From a shell: `executioner run` net of a 1-job run (its start-up is local-wide-cli's and
        # cli-status's), per hop; against what a shell user would write, the commands one by one.
        cli.append(max(cli_run_wall(path) - cli_run_wall(one), 1e-6) / (n - 1) * 1000)
        shell.append(timed(lambda: xargs(commands, 1)) / n * 1000)
    results = [
        CaseResult(
            "local-chain",
            f"ms per hop, {n} jobs",
            ours,
            base,
            "sequential spawn loop",
            "ours - baseline <= 2 ms",
            lambda o, b: o - b <= 2.0,
        ),
        CaseResult(
            "local-chain-cli",
            f"ms per hop, {n} jobs, executioner run (net of a 1-job run)",
            cli,
            shell,
            "xargs -P1",
            "ours - baseline <= 2 ms",
            lambda o, b: o - b <= 2.0,
        ),
    ]
    for result in results:
        result.note = f"overhead {result.ours_median - result.baseline_median:.3f} ms per hop"
    return results
