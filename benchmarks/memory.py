"""Coordinator memory running a 10,000-job local workflow, measured as the CLI's peak RSS."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import workflows
from benchmarks.cli_runs import history_env
from benchmarks.harness import CaseResult


def memory(scratch: Path, n: int, repeat: int) -> CaseResult:
    path = workflows.write(scratch / "mem.json", workflows.random_dag(n))
    executioner = str(Path(sys.executable).parent / "executioner")
    ours = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as home:
            # A fresh interpreter per measurement: ru_maxrss of children is a high-water mark.
            probe = (
                "import resource, subprocess, sys; "
                "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
            )
            out = subprocess.run(
                [sys.executable, "-c", probe, executioner, "run", str(path), "--max-parallel", "2"],
                env={**os.environ, **history_env(home)},
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            ours.append(int(out.strip().splitlines()[-1]) / 1024)  # KiB -> MiB
    return CaseResult(
        "memory", f"peak RSS MiB, {n}-job local run (CLI)", ours, [], "", "<= 250 MB", lambda o, b: o <= 250
    )
