"""``python -m benchmarks [CASE ...] [--smoke]``: every case against its baseline, in one run.

Cases: local-wide, local-chain, celery-wide, celery-chain, plan-fresh, plan-resume, memory, cli, web
(or ``all``). Where users run a command from a shell, the case is also measured that way
(``-cli``: a fresh interpreter, its start included) beside the in-process figure. Prints one line
per case with the medians (min-max) and the ratio, writes the results as JSON. ``--smoke`` runs each
case tiny, once: it keeps the harness from rotting (CI), it measures nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import CaseResult, machine, write_results
from workers.collector import tune_collector

FULL = {
    "wide": 1000,
    "chain": 500,
    "cwide": 2000,
    "cchain": 200,
    "plan": 10_000,
    "attempts": 5,
    "memory": 10_000,
    "web_runs": 10_000,
    "web_jobs": 2000,
    "repeat": 5,
}
SMOKE = {
    "wide": 20,
    "chain": 10,
    "cwide": 20,
    "cchain": 5,
    "plan": 200,
    "attempts": 2,
    "memory": 50,
    "web_runs": 50,
    "web_jobs": 30,
    "repeat": 1,
}
CASES = [
    "local-wide",
    "local-chain",
    "celery-wide",
    "celery-chain",
    "plan-fresh",
    "plan-resume",
    "memory",
    "cli",
    "web",
]


def run_cases(names: list[str], size: dict, repeat: int, scratch: Path) -> list[CaseResult]:
    from benchmarks import local_cases, memory, planning

    results: list[CaseResult] = []

    def report(result: CaseResult) -> None:
        results.append(result)
        print(result.line(), flush=True)

    if "local-wide" in names:
        for result in local_cases.local_wide(scratch, size["wide"], repeat):
            report(result)
    if "local-chain" in names:
        for result in local_cases.local_chain(scratch, size["chain"], repeat):
            report(result)
    if {"celery-wide", "celery-chain"} & set(names):
        from benchmarks import celery_cases
        from benchmarks.servers import Stack

        with Stack(scratch) as stack:
            if "celery-wide" in names:
                for result in celery_cases.celery_wide(stack, scratch, size["cwide"], repeat):
                    report(result)
            if "celery-chain" in names:
                for result in celery_cases.celery_chain(stack, scratch, size["cchain"], repeat):
                    report(result)
    if "plan-fresh" in names:
        for result in planning.plan_fresh(scratch, size["plan"], repeat):
            report(result)
    if "plan-resume" in names:
        for result in planning.plan_resume(scratch, size["plan"], size["attempts"], repeat):
            report(result)
    if "memory" in names:
        report(memory.memory(scratch, size["memory"], min(repeat, 3)))
    if "cli" in names:
        for result in local_cases.cli_reads(scratch, repeat):
            report(result)
    if "web" in names:
        from benchmarks import web_cases

        for result in web_cases.web_pages(scratch, size["web_runs"], size["web_jobs"], repeat):
            report(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", default=["all"], help=f"all, or any of: {', '.join(CASES)}")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, once: checks the harness only")
    parser.add_argument("--repeat", type=int, help="repetitions per case (median reported)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/latest.json"))
    args = parser.parse_args(argv)
    names = CASES if "all" in args.cases else args.cases
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s): {', '.join(unknown)}")
    size = SMOKE if args.smoke else FULL
    repeat = args.repeat or size["repeat"]
    # The in-process cases run in this process: its collector tuned as `executioner` tunes its own
    # (workers.collector), or they would measure a default no command runs with. The plain Celery
    # group's client runs here too, so its baseline gets the same.
    tune_collector()
    info = machine()
    print(
        f"# {info['date']} {info['cpus']} CPUs, Python {info['python']}, load {info['load_average']}"
        f"{' (smoke: sizes too small to mean anything)' if args.smoke else ''}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="executioner-bench-") as scratch:
        results = run_cases(names, size, repeat, Path(scratch))
    write_results(results, args.out, args.smoke)
    print(f"# results: {args.out}")
    return 0 if args.smoke or all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
