"""The seed tool's flags, kept for its users' scripts, mapped onto the same commands.

``executioner -c WF`` (run), ``-c WF --from-job J``, ``-c WF --resume-from N [--resume-failed-only]
[--force] [--dry-run]``, ``--mark-success -r N -j a,b``, ``--rollback-to J -r N``,
``--show-resume-status -r N``.
"""

from __future__ import annotations

import click

from orchestrator.limits import MAX_ID

_OPTIONS = [
    click.option("-c", "--config", "legacy_config", type=click.Path(dir_okay=False), hidden=True),
    click.option("--from-job", "legacy_from_jobs", multiple=True, hidden=True),
    click.option("--resume-from", "legacy_resume_from", type=click.IntRange(1, MAX_ID), hidden=True),
    click.option("--resume-failed-only", "legacy_failed_only", is_flag=True, hidden=True),
    click.option("--force", "legacy_force", is_flag=True, hidden=True),
    click.option("--dry-run", "legacy_dry_run", is_flag=True, hidden=True),
    click.option("--mark-success", "legacy_mark_success", is_flag=True, hidden=True),
    click.option("-r", "--run-id", "legacy_run_id", type=click.IntRange(1, MAX_ID), hidden=True),
    click.option("-j", "--jobs", "legacy_jobs", hidden=True),
    click.option("--rollback-to", "legacy_rollback_to", hidden=True),
    click.option("--show-resume-status", "legacy_show_status", is_flag=True, hidden=True),
    click.option("--json", "legacy_json", is_flag=True, hidden=True),
]


def LEGACY_OPTIONS(f):
    for option in reversed(_OPTIONS):
        f = option(f)
    return f


def legacy_dispatch(ctx: click.Context, o: dict) -> None:
    from orchestrator.cli import main as commands

    def need_run_id(flag: str) -> int:
        if o["legacy_run_id"] is None:
            raise click.UsageError(f"{flag} needs -r RUN_ID")
        return o["legacy_run_id"]

    as_json = o["legacy_json"]
    if o["legacy_mark_success"]:
        run_id = need_run_id("--mark-success")
        jobs = [j.strip() for j in (o["legacy_jobs"] or "").split(",") if j.strip()]
        if not jobs:
            raise click.UsageError("--mark-success needs -j JOB[,JOB...]")
        ctx.invoke(
            commands.mark_success,
            run_id=run_id,
            jobs=jobs,
            with_upstream=False,
            force=o["legacy_force"],
            as_json=as_json,
        )
    elif o["legacy_rollback_to"]:
        ctx.invoke(
            commands.rollback,
            run_id=need_run_id("--rollback-to"),
            job=o["legacy_rollback_to"],
            as_json=as_json,
        )
    elif o["legacy_show_status"]:
        ctx.invoke(commands.status, run_id=need_run_id("--show-resume-status"), as_json=as_json)
    elif o["legacy_resume_from"] is not None:
        ctx.invoke(
            commands.resume,
            run_id=o["legacy_resume_from"],
            workflow=o["legacy_config"],
            failed_only=o["legacy_failed_only"],
            force=o["legacy_force"],
            rerun_changed=False,
            from_jobs=o["legacy_from_jobs"],
            executor=None,
            max_parallel=None,
            dry_run=o["legacy_dry_run"],
            as_json=as_json,
        )
    elif o["legacy_config"]:
        ctx.invoke(
            commands.run,
            workflow=o["legacy_config"],
            from_jobs=o["legacy_from_jobs"],
            executor=None,
            max_parallel=None,
            dry_run=o["legacy_dry_run"],
            as_json=as_json,
        )
    else:
        click.echo(ctx.get_help())
