"""The ``executioner`` command: parse, call one library function, render. Nothing else lives here."""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager, nullcontext

import click

from orchestrator.cli import render
from orchestrator.cli.legacy import LEGACY_OPTIONS, legacy_dispatch
from orchestrator.cli.services import flower, worker
from orchestrator.errors import DatabaseFault, FencedError, LockedError, UserError, is_database_error
from orchestrator.executors.registry import NAMES as EXECUTOR_NAMES
from orchestrator.limits import MAX_ID, MAX_LIST, MAX_PARALLEL

RUN_ID = click.IntRange(1, MAX_ID)
# Spelled here, not imported: the CLI stays light (a test checks they match workers.statuses).
ATTEMPT_STATUSES = (
    "RUNNING",
    "SUCCESS",
    "FAILED",
    "PARTIAL",
    "CANCELLED",
    "INTERRUPTED",
)  # past it, the database would overflow, not answer "unknown"
PARALLEL = click.IntRange(1, MAX_PARALLEL)


class _Cli(click.Group):
    """Maps the errors a user can cause to one clear line on stderr and SPEC's exit codes."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # usage errors: click prints them and exits 2
        except (UserError, LockedError) as exc:
            for text in exc.lines():
                click.echo(f"executioner: {text}", err=True)
            ctx.exit(exc.exit_code)
        except FencedError as exc:
            click.echo(f"executioner: stopped: {exc}", err=True)
            ctx.exit(1)
        except DatabaseFault as exc:
            click.echo(f"executioner: {exc}", err=True)
            ctx.exit(1)
        except BrokenPipeError:  # `executioner history 3 | head`: the reader left, so do we, quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(141)
        except KeyboardInterrupt:
            click.echo("executioner: interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:
            if os.environ.get("EXECUTIONER_DEBUG"):
                raise
            if is_database_error(exc):  # one line, never the SQL text or its parameters (job output)
                from orchestrator.db.engine import describe

                click.echo(f"executioner: database error: {describe(exc)}", err=True)
                ctx.exit(1)
            click.echo(
                f"executioner: internal error: {type(exc).__name__}: {exc} "
                "(set EXECUTIONER_DEBUG=1 for the traceback)",
                err=True,
            )
            ctx.exit(1)


def _settings(ctx: click.Context):
    return ctx.find_root().obj["settings"]


@contextmanager
def _context(ctx: click.Context, *, reads_only: bool = False, pool=None):
    """The command's context. ``reads_only``: the command reads the history and prints it (no
    coordinator, no server loop), with the cyclic collector paused (``workers.collector.paused``).
    What lives until the command ends is frozen out of the collector (``workers.collector.settle``).
    ``pool``: a local job pool started ahead (``_pool_ahead``), the context's to hand over or stop."""
    import logging

    from orchestrator.context import Context
    from workers.collector import paused, settle

    logging.basicConfig(level=logging.WARNING, format="executioner: %(message)s", stream=sys.stderr)
    # pottery logs a full traceback for every Redis error it retries; we say what matters in one line.
    logging.getLogger("pottery").setLevel(logging.CRITICAL)
    with paused() if reads_only else nullcontext():
        c = Context(_settings(ctx), pool)
        settle()  # the command's imports and its context
        try:
            yield c
        finally:
            c.close()
            settle()  # all that is still alive ends with the process


def _pool_ahead(ctx: click.Context, executor: str | None, dry_run: bool):
    """A run on the local executor: its job pool started before this command imports and plans, so
    the pool's interpreter starts on another core meanwhile (``workers.pool_start``)."""
    settings = _settings(ctx)
    if dry_run or (executor or settings.default_executor) != "local":
        return None
    from workers.pool_start import start_pool

    return start_pool(str(settings.home))


def _json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")(f)


@click.group(cls=_Cli, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", type=click.Path(file_okay=False), help="State directory [env EXECUTIONER_HOME].")
@click.option("--database-url", help="SQLAlchemy URL of the history [env EXECUTIONER_DATABASE_URL].")
@click.option("--broker-url", help="Celery broker; makes celery the default [env EXECUTIONER_BROKER_URL].")
@click.option("--result-backend", help="Celery result backend [env EXECUTIONER_RESULT_BACKEND].")
@click.option("--lock-urls", help="Comma-separated Redis URLs for Redlock [env EXECUTIONER_LOCK_URLS].")
@LEGACY_OPTIONS
@click.pass_context
def cli(ctx: click.Context, home, database_url, broker_url, result_backend, lock_urls, **legacy) -> None:
    """Executioner: run DAGs of shell jobs, resume failed runs safely, audit every attempt."""
    from orchestrator.settings import Settings

    ctx.ensure_object(dict)
    ctx.obj["settings"] = Settings.from_env(
        home=home,
        database_url=database_url,
        broker_url=broker_url,
        result_backend=result_backend,
        lock_urls=lock_urls,
    )
    if ctx.invoked_subcommand is None:
        legacy_dispatch(ctx, legacy)


def _reporter(as_json: bool):
    from orchestrator.cli.progress import PlainReporter, RichReporter
    from orchestrator.reporting import NullReporter

    if as_json:
        return NullReporter()
    return RichReporter() if render.is_tty() else PlainReporter()


def _cancel_on_signals(coordinator) -> None:
    """Ctrl-C and SIGTERM cancel the attempt: running jobs are killed and recorded CANCELLED."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: coordinator.request_cancel(signal.Signals(signum).name))


def _finish_attempt(result, as_json: bool) -> None:
    from orchestrator.launch import DryRun, NothingToDo

    if isinstance(result, DryRun):
        render.dry_run(result, as_json=as_json)
        sys.exit(0 if result.valid else 2)
    if isinstance(result, NothingToDo):
        render.nothing_to_do(result, as_json=as_json)
        sys.exit(0)
    render.outcome(result, as_json=as_json)
    sys.exit(result.exit_code)


def _params_options(f):
    f = click.option(
        "--params-file",
        type=click.Path(dir_okay=False),
        help="JSON or YAML mapping of parameter values (--param wins).",
    )(f)
    return click.option(
        "--param",
        "param_items",
        multiple=True,
        metavar="NAME=VALUE",
        help="A parameter declared in the workflow's params (repeatable).",
    )(f)


def _given_params(param_items: tuple[str, ...], params_file: str | None) -> dict:
    from orchestrator.errors import UserError
    from orchestrator.loader import load_params_file
    from orchestrator.params import ParamError, parse_assignments

    given = load_params_file(params_file) if params_file else {}
    try:
        given.update(parse_assignments(param_items))
    except ParamError as exc:
        raise UserError(str(exc)) from None
    return given


def _trigger_reason() -> str:
    from workers.secrets import redact_urls

    # Stored with the attempt: a --database-url or --broker-url password must not be.
    return redact_urls(" ".join(["executioner", *sys.argv[1:]]))[:500]


@cli.command()
@click.argument("workflow", type=click.Path(dir_okay=False))
@click.option("--from-job", "from_jobs", multiple=True, help="Run this job and its descendants (repeatable).")
@click.option("--executor", type=click.Choice(EXECUTOR_NAMES), help="Default: celery if a broker is set.")
@click.option("--max-parallel", type=PARALLEL, help="Jobs in flight at once (local: CPU count).")
@click.option("--dry-run", is_flag=True, help="Show the plan and the verdict; write nothing.")
@_params_options
@click.option(
    "--logical-date",
    metavar="ISO",
    help="The date the run processes (default now; no offset: the schedule's time zone).",
)
@click.option("--triggered-by", default="cli", hidden=True)  # set by the scheduler and backfill
@click.option("--trigger-reason", hidden=True)
@click.option("--slot", "slot_json", hidden=True)  # the schedule slot this run fires (JSON)
@_json_option
@click.pass_context
def run(
    ctx,
    workflow,
    from_jobs,
    executor,
    max_parallel,
    dry_run,
    param_items,
    params_file,
    logical_date,
    triggered_by,
    trigger_reason,
    slot_json,
    as_json,
):
    """Start a new run of WORKFLOW (attempt 1)."""
    pool = _pool_ahead(ctx, executor, dry_run)  # first: it starts while the rest is imported
    from orchestrator.launch import RunRequest, slot_from_json, start_run

    request = RunRequest(
        workflow,
        tuple(from_jobs),
        executor,
        max_parallel,
        dry_run,
        triggered_by=triggered_by,
        trigger_reason=trigger_reason or _trigger_reason(),
        logical_date=logical_date,
        slot=slot_from_json(slot_json) if slot_json else None,
    )
    request.params = _given_params(param_items, params_file)
    with _context(ctx, reads_only=dry_run, pool=pool) as c:
        result = start_run(c, request, _reporter(as_json or dry_run), _cancel_on_signals)
        _finish_attempt(result, as_json)  # a dry run's plan printed with the collector still paused


@cli.command()
@click.argument("run_id", type=RUN_ID)
@click.option(
    "-c",
    "--config",
    "workflow",
    type=click.Path(dir_okay=False),
    help="Workflow file (default: the one stored with the last attempt).",
)
@click.option("--failed-only", is_flag=True, help="Re-run only FAILED/ERROR/TIMEOUT jobs.")
@click.option("--force", is_flag=True, help="Allow every workflow change.")
@click.option("--rerun-changed", is_flag=True, help="Re-run jobs whose definition changed, and descendants.")
@click.option("--from-job", "from_jobs", multiple=True, help="Roll this job and its descendants back first.")
@click.option("--executor", type=click.Choice(EXECUTOR_NAMES))
@click.option("--max-parallel", type=PARALLEL)
@click.option("--dry-run", is_flag=True, help="Show the plan, the changes and the verdict; write nothing.")
@click.option("--param", "param_items", multiple=True, hidden=True)  # refused, with the reason
@click.option("--triggered-by", default="cli", hidden=True)  # set by the web view
@click.option("--trigger-reason", hidden=True)
@click.option("--as-user", hidden=True)  # the web view's signed-in user, recorded as who resumed
@_json_option
@click.pass_context
def resume(
    ctx,
    run_id,
    workflow,
    failed_only,
    force,
    rerun_changed,
    from_jobs,
    executor,
    max_parallel,
    dry_run,
    param_items,
    triggered_by,
    trigger_reason,
    as_user,
    as_json,
) -> None:
    """Resume RUN_ID as its next attempt: re-run what is not effectively SUCCESS."""
    pool = _pool_ahead(ctx, executor, dry_run)  # first: it starts while the rest is imported
    from orchestrator.launch import ResumeRequest, resume_run

    request = ResumeRequest(
        run_id,
        workflow,
        failed_only,
        force,
        rerun_changed,
        tuple(from_jobs),
        executor,
        max_parallel,
        dry_run,
        triggered_by=triggered_by,
        trigger_reason=trigger_reason or _trigger_reason(),
        params=dict.fromkeys(param_items, ""),
        user=as_user,
    )
    with _context(ctx, reads_only=dry_run, pool=pool) as c:
        result = resume_run(
            c, request, _reporter(as_json or dry_run), _cancel_on_signals, warn=render.warning
        )
        _finish_attempt(result, as_json)


@cli.command("mark-success")
@click.argument("run_id", type=RUN_ID)
@click.argument("jobs", nargs=-1, required=True)
@click.option("--with-upstream", is_flag=True, help="Mark unsatisfied ancestors SUCCESS too.")
@click.option("--force", is_flag=True, help="Mark even if ancestors are not SUCCESS.")
@click.option("--dry-run", is_flag=True, help="Say which jobs it would mark; write nothing, take no lock.")
@_json_option
@click.pass_context
def mark_success(ctx, run_id, jobs, with_upstream, force, dry_run, as_json) -> None:
    """Set the effective state of JOBS to SUCCESS (audited; no attempt)."""
    from orchestrator import manual

    with _context(ctx) as c:
        result = manual.mark_success(
            c, run_id, list(jobs), with_upstream=with_upstream, force=force, dry_run=dry_run
        )
    render.manual(result, as_json=as_json)


@cli.command()
@click.argument("run_id", type=RUN_ID)
@click.argument("job")
@click.option("--dry-run", is_flag=True, help="Say which jobs it would roll back; write nothing.")
@_json_option
@click.pass_context
def rollback(ctx, run_id, job, dry_run, as_json) -> None:
    """Put JOB and all its descendants back to PENDING (audited; no attempt)."""
    from orchestrator import manual

    with _context(ctx) as c:
        result = manual.rollback(c, run_id, job, dry_run=dry_run)
    render.manual(result, as_json=as_json)


@cli.command()
@click.argument("run_id", type=RUN_ID)
@_json_option
@click.pass_context
def status(ctx, run_id, as_json) -> None:
    """Attempts, effective job states, and the plan a resume would follow."""
    from orchestrator.inspection import run_status

    with _context(ctx, reads_only=True) as c:
        render.status(run_status(c, run_id), as_json=as_json)


@cli.command()
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, MAX_LIST))
@click.option("--workflow", "application", help="Only runs of this application_name.")
@click.option("--status", type=click.Choice(ATTEMPT_STATUSES), help="Only runs whose last attempt is this.")
@click.option(
    "--logical-date", metavar="DATE", help="Only runs of this logical date (YYYY-MM-DD: its day; or ISO)."
)
@_json_option
@click.pass_context
def runs(ctx, limit, application, status, logical_date, as_json) -> None:
    """Recent runs, newest first."""
    from orchestrator.listing import run_filter, runs_list

    with _context(ctx, reads_only=True) as c:
        render.runs(runs_list(c, limit, run_filter(application, status, logical_date)), as_json=as_json)


@cli.command()
@click.argument("run_id", type=RUN_ID)
@click.option("--wait", is_flag=True, help="Wait until the run has stopped.")
@click.option("--timeout", default=600, show_default=True, type=click.IntRange(1, 86400), help="With --wait.")
@_json_option
@click.pass_context
def cancel(ctx, run_id, wait, timeout, as_json) -> None:
    """Stop RUN_ID from any machine: its coordinator kills the jobs and records CANCELLED (audited)."""
    from orchestrator.cancelling import cancel_run

    with _context(ctx) as c:
        render.cancelled(cancel_run(c, run_id, wait=wait, timeout=timeout), as_json=as_json)


@cli.command()
@click.option(
    "--older-than", required=True, metavar="DUR", help="Age of the runs to remove: 30d, 12h, 2w ..."
)
@click.option("--yes", is_flag=True, help="Remove them (without it: only say what would be removed).")
@_json_option
@click.pass_context
def prune(ctx, older_than, yes, as_json) -> None:
    """Remove old runs' history and logs (runs that are not running); a dry run without --yes."""
    from datetime import UTC, datetime

    from orchestrator.prune import parse_age
    from orchestrator.prune import prune as prune_runs

    age = parse_age(older_than)
    with _context(ctx) as c:
        render.pruned(prune_runs(c, age, datetime.now(UTC), yes=yes), as_json=as_json)


@cli.command()
@click.argument("run_id", type=RUN_ID)
@_json_option
@click.pass_context
def audit(ctx, run_id, as_json) -> None:
    """Who marked, rolled back or force-resumed RUN_ID, from which host, when, after which attempt."""
    from orchestrator.inspection import run_audit

    with _context(ctx, reads_only=True) as c:
        render.audit(run_audit(c, run_id), as_json=as_json)


@cli.command()
@click.argument("run_id", type=RUN_ID)
@click.option("--job", "job_id", help="Only this job.")
@_json_option
@click.pass_context
def history(ctx, run_id, job_id, as_json) -> None:
    """Every job of every attempt, with every try and its exit code."""
    from orchestrator.inspection import run_history

    with _context(ctx, reads_only=True) as c:
        render.history(run_history(c, run_id, job_id), as_json=as_json)


@cli.command()
@click.argument("run_id", type=RUN_ID)
@click.argument("job")
@click.option("--attempt", type=RUN_ID, help="Attempt (default: the latest one that ran JOB).")
@click.option("--try", "try_number", type=RUN_ID, help="Only this try.")
@click.option("--follow", "-f", is_flag=True, help="Print output as the job runs, until it ends.")
@click.pass_context
def logs(ctx, run_id, job, attempt, try_number, follow) -> None:
    """The whole output (stdout and stderr) of each try of JOB, from the log store."""
    with _context(ctx) as c:
        if follow:
            from orchestrator.joblogs import follow as follow_logs

            status = follow_logs(c, run_id, job, attempt, render.log_chunk)
            render.log_chunk("note", f"job {job}: {status}")
            return
        from orchestrator.joblogs import job_logs

        render.logs(job_logs(c, run_id, job, attempt, try_number))


@cli.command()
@click.argument("workflow", type=click.Path(dir_okay=False))
@_params_options
@_json_option
def validate(workflow, param_items, params_file, as_json) -> None:
    """Check WORKFLOW against every rule, its parameters and templates; exit 2 listing each problem."""
    from orchestrator.errors import UserError, WorkflowError
    from orchestrator.launch import validate_workflow

    try:
        wf = validate_workflow(workflow, _given_params(param_items, params_file))
    except UserError as exc:
        if not as_json:
            raise
        problems = exc.problems if isinstance(exc, WorkflowError) else []
        render.emit_json({"valid": False, "errors": exc.lines(), "problems": [p.as_dict() for p in problems]})
        sys.exit(2)
    if as_json:
        render.emit_json(
            {
                "valid": True,
                "errors": [],
                "application_name": wf.application_name,
                "jobs": len(wf),
                "config_hash": wf.config_hash,
            }
        )
    else:
        render.line(f"{workflow}: valid: {wf.application_name}, {len(wf)} jobs, hash {wf.config_hash[:12]}")


@cli.command()
@click.argument("workflow", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["dot", "mermaid"]), default="dot", show_default=True)
def graph(workflow, fmt) -> None:
    """Draw WORKFLOW's DAG as Graphviz dot or Mermaid."""
    from orchestrator.drawing import to_dot, to_mermaid
    from orchestrator.loader import load_workflow

    wf = load_workflow(workflow)
    render.line(to_dot(wf) if fmt == "dot" else to_mermaid(wf))


@cli.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx) -> None:
    """Apply the migrations this database has not had yet (any SQLAlchemy URL)."""
    from orchestrator.db.engine import make_engine, upgrade

    settings = _settings(ctx)
    engine = make_engine(settings.database_url)
    try:
        before, after = upgrade(engine)
    finally:
        engine.dispose()
    url = engine.url.render_as_string(hide_password=True)
    if before == after:
        render.line(f"{url}: already at revision {after}")
    else:
        render.line(f"{url}: upgraded from {before or 'empty'} to {after}")


# Imported here, after the helpers they share with the commands above are defined.
from orchestrator.cli.scheduling import backfill, schedule, scheduler  # noqa: E402
from orchestrator.cli.web import web  # noqa: E402

for _command in (worker, flower, scheduler, schedule, backfill, web):
    cli.add_command(_command)


def main() -> None:
    from workers.collector import tune_collector

    tune_collector()
    cli(prog_name="executioner")
