"""Scale figures for README "Scaling out" and BENCHMARKS.md: minutes-long runs, recorded, not ratio cases.

``python -m benchmarks.scale celery`` — 20,000 `true` jobs through `executioner run` on Celery, one
worker with 4 processes (the machine's cores are the limit, not the design).
``python -m benchmarks.scale postgres`` — 50 `executioner run` coordinators at once, 20 jobs each
(local executor), against one PostgreSQL.
``python -m benchmarks.scale dag`` — the 100,000-job random DAG (≤ 3 parents among the 200 jobs before)
on the local executor, then `status`, `resume --dry-run` and `history --json` of it, beside `xargs -P2`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import workflows
from benchmarks.cli_runs import EXECUTIONER, history_env, xargs
from benchmarks.servers import Stack, free_port


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and the child's peak RSS (MiB) of one command, run in a fresh interpreter."""
    probe = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *argv], env={**os.environ, **env}, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[1:])} failed: {done.stderr.strip()[:2000]}")
    out = done.stdout.split()
    return float(out[-2]), int(out[-1]) / 1024


def celery(scratch: Path, n: int = 20_000) -> None:
    path = workflows.write(scratch / "c20k.json", workflows.wide(n))
    with Stack(scratch, concurrency=4) as stack, tempfile.TemporaryDirectory() as home:
        env = {"EXECUTIONER_BROKER_URL": stack.broker, **history_env(home)}
        seconds, rss = _timed([EXECUTIONER, "run", str(path)], env)
    print(
        f"celery: {n} jobs, 1 worker x4: {seconds:.1f} s, {n / seconds:.0f} jobs/s, "
        f"coordinator peak {rss:.0f} MiB"
    )


class Postgres:
    """A throwaway cluster on loopback (as the `postgres` user when run as root)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="bench-pg-"))
        self.port = free_port()
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.prefix:
            shutil.chown(self.root, "postgres", "postgres")

    def _bin(self, name: str) -> str:
        found = shutil.which(name) or next(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), None)
        if found is None:
            raise RuntimeError(f"{name} not found (PostgreSQL server binaries)")
        return str(found)

    def __enter__(self) -> str:
        data = self.root / "data"

        def run(*argv: str) -> None:
            subprocess.run([*self.prefix, *argv], check=True, capture_output=True, cwd=self.root)

        run(self._bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=400"
        run(
            self._bin("pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(self.root / "pg.log"),
            "-w",
            "start",
        )
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def __exit__(self, *exc) -> None:
        subprocess.run(
            [*self.prefix, self._bin("pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def postgres(scratch: Path, runs: int = 50, jobs: int = 20) -> None:
    path = workflows.write(scratch / "pg20.json", workflows.random_dag(jobs))
    with Postgres() as url, tempfile.TemporaryDirectory() as home:
        env = {**os.environ, **history_env(home, url)}
        subprocess.run([EXECUTIONER, "db", "upgrade"], env=env, check=True, capture_output=True)
        start = time.perf_counter()
        procs = [
            subprocess.Popen(
                [EXECUTIONER, "run", str(path)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            for _ in range(runs)
        ]
        codes = [p.wait() for p in procs]
        seconds = time.perf_counter() - start
        listed = subprocess.run(
            [EXECUTIONER, "runs", "--json", "--limit", str(runs)], env=env, capture_output=True, text=True
        ).stdout
    ok = sum(c == 0 for c in codes)
    print(
        f"postgres: {runs} concurrent runs x {jobs} jobs: {seconds:.1f} s, "
        f"{runs * jobs / seconds:.0f} jobs/s, "
        f"{ok}/{runs} succeeded, {listed.count('SUCCESS')} listed SUCCESS"
    )


def dag(scratch: Path, n: int = 100_000) -> None:
    path = workflows.write(scratch / "dag.json", workflows.random_dag(n))
    start = time.perf_counter()
    xargs("true\n" * n, 2)
    base = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as home:
        env = history_env(home)
        seconds, rss = _timed([EXECUTIONER, "run", str(path), "--max-parallel", "2"], env)
        print(
            f"dag: {n} jobs: run {seconds:.1f} s ({seconds / base:.2f}x xargs -P2 {base:.1f} s), "
            f"peak {rss:.0f} MiB"
        )
        for argv in (
            ["status", "1"],
            ["status", "1", "--json"],
            ["resume", "1", "--dry-run"],
            ["history", "1", "--json"],
        ):
            seconds, rss = _timed([EXECUTIONER, *argv], env)
            print(f"dag: {' '.join(argv)}: {seconds:.2f} s, peak {rss:.0f} MiB")
        size = os.path.getsize(Path(home) / "executioner.db") / 2**20
        print(f"dag: SQLite history {size:.0f} MiB")


def main() -> int:
    cases = {"celery": celery, "postgres": postgres, "dag": dag}
    chosen = sys.argv[1:] or list(cases)
    with tempfile.TemporaryDirectory() as scratch:
        for name in chosen:
            cases[name](Path(scratch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
