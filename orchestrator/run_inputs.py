"""What a run is given, pinned at ``run`` and the same on every resume: parameters, logical date and
data interval, and the ``pass_env`` values captured from the submitting shell.

``RunInputs`` is stored in the run's row; ``runnable`` turns a workflow (the file's or a stored
snapshot) into the jobs an attempt dispatches: templates rendered with the run's context, and the
environment rule of SPEC applied in one place for both executors —

    the process running the job's environment  <  pass_env  <  the job's env  <  EXECUTIONER_*
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from orchestrator.errors import UserError, WorkflowError, WorkflowProblem
from orchestrator.intervals import Interval, manual_interval
from orchestrator.params import ParamError, env_value, parse_datetime, resolve, template_value
from orchestrator.templating import Renderer, is_template, template_context, time_limit
from orchestrator.workflow import JobDef, Workflow

DRY_RUN_ID = 0  # run_id in templates of a dry run of a new run (the id is given at the first dispatch)


@dataclass(frozen=True, slots=True)
class RunInputs:
    params: dict[str, Any]  # JSON forms (orchestrator.params)
    interval: Interval
    timezone: str = "UTC"  # templates see datetimes in it: the schedule's zone when the run began
    pass_env: dict[str, str] = field(default_factory=dict)

    def columns(self) -> dict[str, Any]:
        """The run row's columns."""
        return {
            "params": self.params,
            "logical_date": self.interval.logical_date,
            "data_interval_start": self.interval.start,
            "data_interval_end": self.interval.end,
            "ds": self.ds,
            "timezone": self.timezone,
            "pass_env": self.pass_env,
        }

    @property
    def ds(self) -> str:
        return self.interval.logical_date.astimezone(ZoneInfo(self.timezone)).strftime("%Y-%m-%d")

    @classmethod
    def from_row(cls, run: Any) -> RunInputs:
        """A stored run's inputs; a run recorded before they existed gets its creation time."""
        logical = run.logical_date or run.created_at
        interval = Interval(run.data_interval_start or logical, run.data_interval_end or logical, logical)
        return cls(dict(run.params or {}), interval, run.timezone or "UTC", dict(run.pass_env or {}))

    def as_dict(self) -> dict[str, Any]:
        """What ``--json`` shows of a run's inputs (pass_env values are not secrets: see loader)."""
        return {"params": self.params, **self.interval.as_dict(), "ds": self.ds}

    def values_for(self, workflow: Workflow) -> dict[str, Any]:
        """The run's value of each parameter ``workflow`` declares. A parameter declared since the
        run began (a resume with ``-c``) gets its default; a required one without is refused."""
        values = {}
        for name, spec in workflow.params.items():
            if name in self.params:
                values[name] = self.params[name]
            elif spec.required and spec.default is None:
                raise UserError(
                    f"{workflow.source}: parameter {name!r} is new and required, and parameters belong to "
                    "the run: start a new run"
                )
            else:
                values[name] = spec.default
        return values

    def job_env(self, workflow: Workflow) -> dict[str, str]:
        """The ``EXECUTIONER_*`` variables every job of the run gets (ISO 8601, UTC)."""
        env = {
            "EXECUTIONER_LOGICAL_DATE": self.interval.logical_date.astimezone(UTC).isoformat(),
            "EXECUTIONER_DATA_INTERVAL_START": self.interval.start.astimezone(UTC).isoformat(),
            "EXECUTIONER_DATA_INTERVAL_END": self.interval.end.astimezone(UTC).isoformat(),
        }
        values = self.values_for(workflow)
        for name, spec in workflow.params.items():
            env[spec.env_name] = env_value(values[name])
        return env


def new_run_inputs(
    workflow: Workflow,
    *,
    given: Mapping[str, Any] | None = None,
    logical_date: str | datetime | None = None,
    interval: Interval | None = None,
    now: datetime | None = None,
    environ: Mapping[str, str] | None = None,
    placeholders: bool = False,
) -> RunInputs:
    """Resolve a new run's inputs; ``UserError`` (exit 2) naming the file for anything wrong.

    ``interval``: a run of a schedule slot (scheduler, backfill), computed by ``orchestrator.intervals``.
    Else ``logical_date`` (ISO 8601 date or date-time, read in the schedule's zone when it has no
    offset; default now) and the schedule's interval containing it.
    """
    tz_name = workflow.schedule.timezone if workflow.schedule else "UTC"
    tz = ZoneInfo(tz_name)
    try:
        params = resolve(workflow.params, dict(given or {}), tz, placeholders=placeholders)
    except ParamError as exc:
        raise UserError(f"{workflow.source}: {exc}") from None
    if interval is None:
        when = now or datetime.now(UTC)
        if logical_date is not None:
            try:
                when = parse_datetime(logical_date, tz)
            except ValueError as exc:
                raise UserError(f"--logical-date {exc}") from None
        interval = manual_interval(workflow.schedule, when)
    env = environ if environ is not None else _environ()
    pass_env = {name: env[name] for name in workflow.pass_env if name in env}
    return RunInputs(params, interval, tz_name, pass_env)


def _environ() -> Mapping[str, str]:
    import os

    return os.environ


def runnable(workflow: Workflow, inputs: RunInputs, run_id: int) -> Workflow:
    """``workflow`` with every template rendered for this run; ``WorkflowError`` listing each failure.

    A workflow without templates is returned as is (no copy: a 100,000-job workflow costs nothing).
    """
    values = inputs.values_for(workflow)
    templated = [job for job in workflow.jobs.values() if _has_template(job)]
    if not templated:
        return workflow
    tz = ZoneInfo(inputs.timezone)
    try:
        params = {n: template_value(s, values[n], tz) for n, s in workflow.params.items()}
    except (ValueError, TypeError) as exc:
        raise UserError(f"run {run_id}: stored parameters cannot be read: {exc}") from None
    renderer = Renderer(
        template_context(
            run_id=run_id,
            params=params,
            logical_date=inputs.interval.logical_date.astimezone(tz),
            data_interval_start=inputs.interval.start.astimezone(tz),
            data_interval_end=inputs.interval.end.astimezone(tz),
        ),
        workflow.source,
    )
    jobs = dict(workflow.jobs)
    with time_limit():
        for job in templated:
            jobs[job.id] = _render_job(renderer, job)
    renderer.check()
    for job in templated:
        _check_rendered(jobs[job.id], workflow.source)
    return dataclasses.replace(workflow, jobs=jobs)


def _has_template(job: JobDef) -> bool:
    # Asked of every job of every resume and status (100,000s): no list built per job.
    command = job.command
    if is_template(command) if isinstance(command, str) else any(is_template(a) for a in command):
        return True
    if job.working_dir and is_template(job.working_dir):
        return True
    return bool(job.env) and any(isinstance(v, str) and is_template(v) for v in job.env.values())


def _render_job(r: Renderer, job: JobDef) -> JobDef:
    if isinstance(job.command, str):
        command: str | tuple[str, ...] = r.text(job.command, job.id, "command")
    else:
        command = tuple(r.text(arg, job.id, "command") for arg in job.command)
    env = {k: r.text(v, job.id, "env") if isinstance(v, str) else v for k, v in job.env.items()}
    working_dir = r.text(job.working_dir, job.id, "working_dir") if job.working_dir else job.working_dir
    return dataclasses.replace(job, command=command, env=env, working_dir=working_dir)


def _check_rendered(job: JobDef, source: str) -> None:
    """What a template produced must still be a command the system can run."""
    problems = []
    if isinstance(job.command, str) and not job.command.strip():
        problems.append(WorkflowProblem(source, "the rendered command is empty", job.id, "command"))
    if isinstance(job.command, tuple) and not job.command[0]:
        problems.append(WorkflowProblem(source, "the rendered program is empty", job.id, "command"))
    if job.working_dir is not None and not job.working_dir:
        problems.append(WorkflowProblem(source, "the rendered working_dir is empty", job.id, "working_dir"))
    if problems:
        raise WorkflowError(problems)


def shown_command(job: JobDef) -> str | list[str]:
    """A job's command as ``--json`` and ``history`` show it."""
    return list(job.command) if isinstance(job.command, tuple) else job.command
