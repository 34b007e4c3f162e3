"""The scheduling commands: ``scheduler``, ``schedule list`` and ``backfill`` (parse, call, render)."""

from __future__ import annotations

import signal
import sys

import click

from orchestrator.cli import render
from orchestrator.cli.main import PARALLEL, _context, _given_params, _json_option, _params_options
from orchestrator.executors.registry import NAMES as EXECUTOR_NAMES


@click.command()
@click.argument("workflows", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--once", is_flag=True, help="Fire what is due now, then exit (cron-driven installs).")
@click.pass_context
def scheduler(ctx, workflows, once) -> None:
    """Fire runs of WORKFLOWS on their `schedule`, once per cron slot however many schedulers run."""
    import logging
    import threading

    from orchestrator.scheduler import Scheduler

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s executioner scheduler: %(message)s")
    logging.getLogger("executioner").setLevel(logging.INFO)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with _context(ctx) as c:
        s = Scheduler(c, list(workflows))
        if once:
            s.once()
        else:
            s.run(stop)


@click.group()
def schedule() -> None:
    """Schedules: next fire times and the last slots."""


@schedule.command("list")
@click.argument("workflows", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--count", default=5, show_default=True, type=click.IntRange(1, 1000), help="Slots shown.")
@_json_option
@click.pass_context
def schedule_list(ctx, workflows, count, as_json) -> None:
    """Next fire times of WORKFLOWS (default: every application with slots) and their last slots."""
    from datetime import UTC, datetime

    from orchestrator.schedule_view import schedule_list as overview

    with _context(ctx) as c:
        data = overview(c, list(workflows), datetime.now(UTC), count, count)
    render.schedules(data, as_json=as_json)


@click.command()
@click.argument("workflow", type=click.Path(dir_okay=False))
@click.option("--start", required=True, metavar="DATE", help="First logical date (ISO date or date-time).")
@click.option("--end", required=True, metavar="DATE", help="End of the range (excluded).")
@click.option("--every", metavar="DUR", help="Step for a workflow without schedule: 1d, 6h, 30m ...")
@click.option("--max-active-runs", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--rerun-failed", is_flag=True, help="Resume --failed-only the slots whose run did not succeed."
)
@_params_options
@click.option("--executor", type=click.Choice(EXECUTOR_NAMES))
@click.option("--max-parallel", type=PARALLEL, help="Jobs in flight per run.")
@click.option("--dry-run", is_flag=True, help="Show what each slot would get; write nothing.")
@_json_option
@click.pass_context
def backfill(
    ctx,
    workflow,
    start,
    end,
    every,
    max_active_runs,
    rerun_failed,
    param_items,
    params_file,
    executor,
    max_parallel,
    dry_run,
    as_json,
) -> None:
    """One run of WORKFLOW per schedule slot whose logical date is in [START, END), oldest first."""
    import threading

    from orchestrator.backfill import BackfillRequest, plan_backfill, run_backfill

    request = BackfillRequest(
        workflow,
        start,
        end,
        every,
        max_active_runs,
        rerun_failed,
        _given_params(param_items, params_file),
        dry_run,
        executor,
        max_parallel,
    )
    with _context(ctx) as c:
        if dry_run:
            result = plan_backfill(c, request)
        else:
            stop = threading.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
            result = run_backfill(c, request, stop, render.backfill_progress)  # stderr: --json stays clean
    render.backfill(result, as_json=as_json, dry_run=dry_run)
    sys.exit(0 if dry_run else result.exit_code)
