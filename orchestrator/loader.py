"""Read a workflow file (JSON or YAML, one schema), validate every rule, build a ``Workflow``.

Every problem is collected (not just the first) and names the file, the job and the field, so one
``validate`` shows a user all there is to fix.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from orchestrator.errors import UserError, WorkflowError, WorkflowProblem
from orchestrator.limits import (
    MAX_BACKOFF,
    MAX_CATCHUP,
    MAX_COMMAND_BYTES,
    MAX_PARALLEL,
    MAX_RETRIES,
    MAX_TEXT,
)
from orchestrator.loader_run_fields import RunFieldsValidator, _field, _type, _variable_name
from orchestrator.parsing import MAX_FILE_BYTES, bad_string, parse_text, summary
from orchestrator.trigger_rules import TriggerRule
from orchestrator.workflow import (
    DEFAULTABLE_FIELDS,
    JOB_FIELDS,
    RETRY_FIELDS,
    SCHEDULE_CATCHUP,
    SCHEDULE_OVERLAP,
    WORKFLOW_FIELDS,
    JobDef,
    Schedule,
    Workflow,
)
from workers.retry import DEFAULT_RETRY_ON, MAX_SECONDS, RetryPolicy
from workers.secrets import REF, is_ref
from workers.statuses import FAILURE_STATUSES, JobStatus

JOB_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,200}")  # used with fullmatch: "abc\n" is not an id


def load_workflow(path: str | Path) -> Workflow:
    """Parse and validate ``path``; raise ``WorkflowError`` listing every problem."""
    name = str(path)
    raw = _read(path, name)
    try:
        # Universal newlines, as reading the file as text does.
        text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError as exc:
        raise WorkflowError([WorkflowProblem(name, f"cannot read: {exc}")]) from None
    return workflow_from_data(parse_text(text, name), name, hashlib.sha256(raw).hexdigest())


def file_sha256(path: str | Path) -> str:
    """The digest ``load_workflow`` gives the workflow it loads from ``path``, without loading it
    (``WorkflowError`` when it cannot be read)."""
    return hashlib.sha256(_read(path, str(path))).hexdigest()


def _read(path: str | Path, name: str) -> bytes:
    try:
        if Path(path).stat().st_size > MAX_FILE_BYTES:
            raise WorkflowError([WorkflowProblem(name, f"is larger than {MAX_FILE_BYTES >> 20} MiB")])
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise WorkflowError([WorkflowProblem(name, "file not found")]) from None
    except OSError as exc:
        raise WorkflowError([WorkflowProblem(name, f"cannot read: {exc}")]) from None


def load_params_file(path: str | Path) -> dict[str, Any]:
    """``--params-file``: a JSON or YAML mapping of parameter names to values (hostile-input bounds)."""
    name = str(path)
    try:
        if Path(path).stat().st_size > MAX_FILE_BYTES:
            raise UserError(f"{name}: is larger than {MAX_FILE_BYTES >> 20} MiB")
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{name}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{name}: cannot read: {exc}") from None
    data = parse_text(text, name)
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise UserError(f"{name}: must be a mapping of parameter names to values, got {_type(data)}")
    return data


def workflow_from_data(data: Any, name: str = "<workflow>", file_sha256: str | None = None) -> Workflow:
    """Validate already-parsed data (a file's, or a stored snapshot's) and build the ``Workflow``
    (``file_sha256``: the digest of the file's bytes it was parsed from)."""
    v = _Validator(name, file_sha256)
    workflow = v.workflow(data)
    if v.problems:
        raise WorkflowError(v.problems)
    assert workflow is not None
    return workflow


class _Validator(RunFieldsValidator):
    def __init__(self, name: str, file_sha256: str | None = None) -> None:
        self.name = name
        self.file_sha256 = file_sha256
        self.problems: list[WorkflowProblem] = []
        self.declared: dict[str, list[str]] = {}  # every valid id -> its dependencies, bad jobs too
        self._policies: dict[tuple, RetryPolicy] = {}

    def err(self, message: str, job: str | None = None, field: str | None = None) -> None:
        self.problems.append(WorkflowProblem(self.name, message, job, field))

    def workflow(self, data: Any) -> Workflow | None:
        if not isinstance(data, dict):
            self.err(f"must be a mapping with application_name and jobs, got {_type(data)}")
            return None
        for key in data:
            if key not in WORKFLOW_FIELDS:
                self.err(f"unknown key (allowed: {', '.join(WORKFLOW_FIELDS)})", field=_field(key))
        app = data.get("application_name")
        if "application_name" not in data:
            self.err("is required", field="application_name")
        elif not isinstance(app, str) or not app.strip():
            self.err(f"must be a non-empty string, got {summary(app)}", field="application_name")
        else:
            self.text(app, None, "application_name", 200)
        max_parallel = self.number(
            data, "max_parallel", None, None, integer=True, minimum=1, maximum=MAX_PARALLEL
        )
        defaults = data.get("defaults", {})
        if defaults is None:
            defaults = {}
        if not isinstance(defaults, dict):
            self.err(f"must be a mapping, got {_type(defaults)}", field="defaults")
            defaults = {}
        for key in defaults:
            if key not in DEFAULTABLE_FIELDS:
                self.err(
                    f"unknown key {_field(key)!r} (allowed: {', '.join(DEFAULTABLE_FIELDS)})",
                    field="defaults",
                )
        schedule = self.schedule(data)
        params = self.params(data.get("params"), schedule)
        pass_env = self.pass_env(data.get("pass_env"))
        notify = self.notify(data.get("notify"))
        max_run_time = self.number(data, "max_run_time", None, None, positive=True, maximum=MAX_SECONDS)
        sla = self.number(data, "sla", None, None, positive=True, maximum=MAX_SECONDS)
        jobs_data = data.get("jobs")
        if "jobs" not in data:
            self.err("is required", field="jobs")
            jobs_data = []
        elif not isinstance(jobs_data, list) or not jobs_data:
            self.err(f"must be a non-empty list of jobs, got {summary(jobs_data)}", field="jobs")
            jobs_data = []
        jobs: dict[str, JobDef] = {}
        for index, raw in enumerate(jobs_data):
            job = self.job(index, raw, defaults)
            if job is not None:
                jobs[job.id] = job
        self.dependencies()
        if self.problems:
            return None
        workflow = Workflow(
            str(app),
            jobs,
            max_parallel,
            schedule,
            source=self.name,
            params=params,
            pass_env=pass_env,
            notify=notify,
            max_run_time=max_run_time,
            sla=sla,
            file_sha256=self.file_sha256,
        )
        cycle = workflow.dag.find_cycle()
        if cycle:
            self.err(f"dependency cycle: {' -> '.join(cycle)}", job=cycle[0], field="dependencies")
            return None
        return workflow

    def schedule(self, data: dict) -> Schedule | None:
        cron = data.get("schedule")
        tz = data.get("timezone", "UTC")
        if "timezone" in data and (not isinstance(tz, str) or not _valid_timezone(tz)):
            self.err(f"unknown time zone {tz!r}", field="timezone")
        overlap = data.get("schedule_overlap", "skip")
        if overlap not in SCHEDULE_OVERLAP:
            self.err(
                f"must be one of {', '.join(SCHEDULE_OVERLAP)}, got {overlap!r}", field="schedule_overlap"
            )
        catchup = data.get("schedule_catchup", "latest")
        if catchup not in SCHEDULE_CATCHUP:
            self.err(
                f"must be one of {', '.join(SCHEDULE_CATCHUP)}, got {catchup!r}", field="schedule_catchup"
            )
        limit = self.number(
            data, "schedule_catchup_limit", None, 10, integer=True, minimum=1, maximum=MAX_CATCHUP
        )
        if cron is None:
            return None
        if not isinstance(cron, str) or not _valid_cron(cron):
            self.err(f"not a valid cron expression: {cron!r}", field="schedule")
            return None
        return Schedule(cron, str(tz), str(overlap), str(catchup), int(limit))

    def job(self, index: int, raw: Any, defaults: dict) -> JobDef | None:
        label = f"#{index + 1}"
        if not isinstance(raw, dict):
            self.err(f"must be a mapping, got {_type(raw)}", job=label)
            return None
        job_id = raw.get("id")
        if "id" not in raw:
            self.err("is required", job=label, field="id")
            return None
        if not isinstance(job_id, str) or not JOB_ID_RE.fullmatch(job_id):
            self.err(f"must match [A-Za-z0-9_.-]{{1,200}}, got {summary(job_id)}", job=label, field="id")
            return None
        if job_id in self.declared:
            self.err("duplicate job id", job=job_id, field="id")
            return None
        before = len(self.problems)
        for key in raw:
            if key not in _JOB_FIELD_SET:
                self.err(f"unknown key (allowed: {', '.join(JOB_FIELDS)})", job=job_id, field=_field(key))
        merged = {**defaults, **raw}
        command = self.command(job_id, merged)
        deps = raw.get("dependencies", [])
        if deps is None:
            deps = []
        if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
            self.err(f"must be a list of job ids, got {summary(deps)}", job=job_id, field="dependencies")
            deps = []
        elif len(set(deps)) != len(deps):
            self.err("lists a job more than once", job=job_id, field="dependencies")
        self.declared[job_id] = deps
        env = self.env(job_id, merged.get("env", {}))
        working_dir = merged.get("working_dir")
        if working_dir is not None and (not isinstance(working_dir, str) or not working_dir):
            self.err(f"must be a path string, got {summary(working_dir)}", job=job_id, field="working_dir")
        else:
            self.text(working_dir, job_id, "working_dir")
        queue = merged.get("queue", "default")
        if not isinstance(queue, str) or not queue:
            self.err(f"must be a non-empty string, got {summary(queue)}", job=job_id, field="queue")
        else:
            self.text(queue, job_id, "queue")
        timeout = self.number(merged, "timeout", job_id, None, positive=True, maximum=MAX_SECONDS)
        retry = self.retry(job_id, merged)
        rule = merged.get("trigger_rule", TriggerRule.ALL_SUCCESS)
        if not isinstance(rule, str) or rule not in TriggerRule._value2member_map_:
            allowed = ", ".join(TriggerRule)
            self.err(f"must be one of {allowed}, got {summary(rule)}", job=job_id, field="trigger_rule")
        elif rule != TriggerRule.ALL_SUCCESS and not deps:
            self.err(f"{rule} needs dependencies to apply to", job=job_id, field="trigger_rule")
        queue_timeout = self.number(merged, "queue_timeout", job_id, None, positive=True, maximum=MAX_SECONDS)
        if len(self.problems) > before or command is None:
            return None
        return JobDef(
            job_id,
            command,
            tuple(deps),
            env,
            working_dir,
            timeout,
            queue,
            retry,
            TriggerRule(rule),
            queue_timeout,
        )

    def command(self, job_id: str, merged: dict) -> str | tuple[str, ...] | None:
        if "command" not in merged:
            self.err("is required", job=job_id, field="command")
            return None
        command = merged["command"]
        if isinstance(command, str) and command.strip():
            return command if self.text(command, job_id, "command", MAX_COMMAND_BYTES) else None
        if isinstance(command, list) and command and all(isinstance(a, str) for a in command):
            if not command[0]:
                self.err("the program (first item) must not be empty", job=job_id, field="command")
                return None
            if not all(self.text(a, job_id, "command", MAX_COMMAND_BYTES) for a in command):
                return None
            return tuple(command)
        self.err(
            f"must be a non-empty string or a non-empty list of strings, got {summary(command)}",
            job=job_id,
            field="command",
        )
        return None

    def env(self, job_id: str, env: Any) -> dict[str, Any]:
        if env is None:
            return {}
        if not isinstance(env, dict):
            self.err(f"must be a mapping of names to values, got {_type(env)}", job=job_id, field="env")
            return {}
        out: dict[str, Any] = {}
        for key, value in env.items():
            if not _variable_name(key):
                self.err(f"invalid variable name {summary(key)}", job=job_id, field="env")
            elif isinstance(value, dict):
                # {from_env: NAME}: a secret taken where the job runs, never stored or shown.
                if is_ref(value) and _variable_name(value[REF]):
                    out[key] = {REF: value[REF]}
                else:
                    self.err(
                        f"value of {key} must be a string, a number or {{from_env: NAME}}, "
                        f"got {summary(value)}",
                        job=job_id,
                        field="env",
                    )
            elif isinstance(value, str) and not self.text(value, job_id, "env", MAX_COMMAND_BYTES, key):
                continue
            elif isinstance(value, bool) or not isinstance(value, str | int | float):
                self.err(
                    f"value of {key} must be a string, a number or {{from_env: NAME}}, got {summary(value)}",
                    job=job_id,
                    field="env",
                )
            else:
                out[key] = str(value)
        return out

    def retry(self, job_id: str, merged: dict) -> RetryPolicy:
        """The job's policy; jobs with the same retry fields share one (a 100,000-job file checks
        each distinct combination once: RetryPolicy is frozen, sharing it is safe)."""
        try:
            key = tuple((f, _frozen(merged[f])) for f in RETRY_FIELDS if f in merged)
            shared = self._policies.get(key)
        except TypeError:  # unhashable (a nested mapping): checked, and refused, the long way
            key, shared = None, None
        if shared is not None:
            return shared
        before = len(self.problems)
        policy = self._retry(job_id, merged)
        if key is not None and len(self.problems) == before:
            self._policies[key] = policy
        return policy

    def _retry(self, job_id: str, merged: dict) -> RetryPolicy:
        n = self.number
        statuses = merged.get("retry_on_status", sorted(DEFAULT_RETRY_ON))
        allowed = sorted(FAILURE_STATUSES)
        if not isinstance(statuses, list) or not all(s in allowed for s in statuses):
            self.err(
                f"must be a list drawn from {', '.join(allowed)}, got {summary(statuses)}",
                job=job_id,
                field="retry_on_status",
            )
            statuses = allowed
        codes = merged.get("retry_on_exit_codes")
        if codes is not None and (
            not isinstance(codes, list)
            or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in codes)
        ):
            self.err(
                f"must be a list of exit codes 0-255, got {summary(codes)}",
                job=job_id,
                field="retry_on_exit_codes",
            )
            codes = None
        return RetryPolicy(
            max_retries=int(n(merged, "max_retries", job_id, 0, integer=True, maximum=MAX_RETRIES)),
            retry_delay=float(n(merged, "retry_delay", job_id, 0.0, maximum=MAX_SECONDS)),
            retry_backoff=float(n(merged, "retry_backoff", job_id, 1.0, positive=True, maximum=MAX_BACKOFF)),
            retry_jitter=float(n(merged, "retry_jitter", job_id, 0.0, maximum=MAX_SECONDS)),
            max_retry_delay=n(merged, "max_retry_delay", job_id, None, maximum=MAX_SECONDS),
            max_retry_time=n(merged, "max_retry_time", job_id, None, maximum=MAX_SECONDS),
            retry_on_status=frozenset(JobStatus(s) for s in statuses),
            retry_on_exit_codes=None if codes is None else frozenset(codes),
        )

    def number(
        self,
        data: dict,
        key: str,
        job_id: str | None,
        default: Any,
        *,
        integer: bool = False,
        positive: bool = False,
        minimum: float = 0,
        maximum: float | None = None,
    ) -> Any:
        """A non-negative (or positive / ``>= minimum``) number; ``null`` means the default."""
        value = data.get(key)
        if value is None:
            return default
        kind = "a whole number" if integer else "a number"
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (integer and not isinstance(value, int))
            or (isinstance(value, float) and not math.isfinite(value))
        ):
            self.err(f"must be {kind}, got {summary(value)}", job=job_id, field=key)
            return default
        if positive and value <= 0:
            self.err(f"must be greater than 0, got {value}", job=job_id, field=key)
            return default
        if value < minimum:
            what = "negative" if minimum == 0 else f"less than {minimum}"
            self.err(f"must not be {what}, got {summary(value)}", job=job_id, field=key)
            return default
        if maximum is not None and value > maximum:
            self.err(f"must be at most {_number(maximum)}, got {summary(value)}", job=job_id, field=key)
            return default
        return value

    def text(
        self, value: Any, job_id: str | None, key: str, limit: int = MAX_TEXT, name: str | None = None
    ) -> bool:
        """A string the operating system can take (no NUL, valid Unicode) of bounded length."""
        if not isinstance(value, str):
            return True
        what = f"value of {name}" if name else "value"
        problem = bad_string(value)
        if problem is None and len(value.encode("utf-8")) > limit:
            problem = f"is longer than {limit} bytes"
        if problem is not None:
            self.err(f"{what} {problem}", job=job_id, field=key)
            return False
        return True

    def dependencies(self) -> None:
        for job_id, deps in self.declared.items():
            for dep in deps:
                if dep not in self.declared:
                    self.err(f"unknown job {dep!r}", job=job_id, field="dependencies")


_JOB_FIELD_SET = frozenset(JOB_FIELDS)  # checked for every key of every job


def _frozen(value: Any) -> Any:
    """A hashable stand-in that keeps types apart (1, 1.0 and True are not the same setting)."""
    if isinstance(value, list):
        return ("list", *map(_frozen, value))
    return (type(value).__name__, value)


def _valid_cron(expr: str) -> bool:
    from croniter import croniter

    return bool(croniter.is_valid(expr))


def _valid_timezone(name: str) -> bool:
    from zoneinfo import ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"
