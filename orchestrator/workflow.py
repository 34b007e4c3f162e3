"""The workflow model: frozen job definitions, their normalized snapshot and its stable hash.

``loader`` builds these from files and validates them; everything downstream (planner, change
detection, history snapshots) works on the normalized form defined here, so a workflow loaded from
YAML, from JSON or from a stored snapshot compares equal when it means the same thing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from orchestrator.dag import Dag
from orchestrator.notify_rules import NotifyRule
from orchestrator.params import ParamSpec
from orchestrator.trigger_rules import TriggerRule
from workers.retry import RetryPolicy
from workers.spec import JobTask

# Fields whose change alters what a job *does*: changing them on a succeeded job is refused on resume.
DEFINITION_FIELDS = ("command", "env", "working_dir", "timeout")
RETRY_FIELDS = (
    "max_retries",
    "retry_delay",
    "retry_backoff",
    "retry_jitter",
    "max_retry_delay",
    "max_retry_time",
    "retry_on_status",
    "retry_on_exit_codes",
)
JOB_FIELDS = (
    "id",
    "command",
    "dependencies",
    *DEFINITION_FIELDS[1:],
    "queue",
    "queue_timeout",
    "trigger_rule",
    *RETRY_FIELDS,
)
DEFAULTABLE_FIELDS = tuple(f for f in JOB_FIELDS if f not in ("id", "dependencies"))
SCHEDULE_OVERLAP = ("skip", "allow")
SCHEDULE_CATCHUP = ("latest", "none", "all")
WORKFLOW_FIELDS = (
    "application_name",
    "max_parallel",
    "defaults",
    "schedule",
    "timezone",
    "schedule_overlap",
    "schedule_catchup",
    "schedule_catchup_limit",
    "params",
    "pass_env",
    "notify",
    "max_run_time",
    "sla",
    "jobs",
)


@dataclass(frozen=True, slots=True)
class JobDef:
    id: str
    command: str | tuple[str, ...]
    dependencies: tuple[str, ...] = ()
    # A value is a string, or {"from_env": NAME}: a secret taken where the job runs (workers.secrets).
    env: dict[str, Any] = field(default_factory=dict, hash=False)
    working_dir: str | None = None
    timeout: float | None = None
    queue: str = "default"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS
    queue_timeout: float | None = None  # seconds it may wait for a worker (Celery), then ERROR

    def normalized(self) -> dict[str, Any]:
        """Canonical dict: every field present, defaults applied, sorted where order is meaningless.
        (``trigger_rule`` only when not the default: a workflow keeps the hash it had before it.)"""
        out = {
            "id": self.id,
            "command": list(self.command) if isinstance(self.command, tuple) else self.command,
            "dependencies": sorted(self.dependencies),
            "env": dict(sorted(self.env.items())),
            "working_dir": self.working_dir,
            "timeout": self.timeout,
            "queue": self.queue,
            **self.retry.to_dict(),
        }
        if self.trigger_rule is not TriggerRule.ALL_SUCCESS:
            out["trigger_rule"] = str(self.trigger_rule)
        if self.queue_timeout is not None:
            out["queue_timeout"] = self.queue_timeout
        return out

    def task(
        self,
        run_id: int,
        attempt_id: int,
        epoch: int = 0,
        before: dict[str, str] | None = None,
        after: dict[str, str] | None = None,
    ) -> JobTask:
        """The task for a worker; ``before``/``after`` are the run's variables the job's ``env``
        overrides (pass_env) or is overridden by (EXECUTIONER_*): see ``orchestrator.run_inputs``."""
        env = {**(before or {}), **self.env, **(after or {})} if before or after else self.env
        return JobTask(
            run_id=run_id,
            attempt_id=attempt_id,
            job_id=self.id,
            command=self.command,
            env=env,
            working_dir=self.working_dir,
            timeout=self.timeout,
            queue=self.queue,
            retry=self.retry,
            epoch=epoch,
        )


@dataclass(frozen=True, slots=True)
class Schedule:
    cron: str
    timezone: str = "UTC"
    overlap: str = "skip"
    catchup: str = "latest"
    catchup_limit: int = 10


@dataclass(frozen=True)
class Workflow:
    application_name: str
    jobs: dict[str, JobDef]  # in file order
    max_parallel: int | None = None
    schedule: Schedule | None = None
    source: str = "<workflow>"  # the file it came from, for messages
    params: dict[str, ParamSpec] = field(default_factory=dict)
    pass_env: tuple[str, ...] = ()  # names captured from the submitting shell at `run`
    notify: tuple[NotifyRule, ...] = ()  # alerts (orchestrator.notify)
    max_run_time: float | None = None  # seconds an attempt may take: then stopped, FAILED (deadline)
    sla: float | None = None  # seconds after the data interval end (or the run's start): alert only
    # sha256 of the bytes of the file it was loaded from (None: not from a file); not in the snapshot.
    file_sha256: str | None = field(default=None, compare=False)

    def snapshot(self) -> dict[str, Any]:
        """The normalized workflow stored with every attempt (and reloadable by ``loader``).

        Built anew at each call: kept, it was 40 MB of a 100,000-job coordinator's memory for its
        whole run. The attempt's row and the hash take it a job at a time (``snapshot_text``,
        ``config_hash``): whole, it was the peak of a 100,000-job run's memory (~90 MB, twice)."""
        snap = self._snapshot_head()
        snap["jobs"] = [job.normalized() for job in self.jobs.values()]
        return snap

    def _snapshot_head(self) -> dict[str, Any]:
        """The snapshot without its jobs (whose key comes last)."""
        snap: dict[str, Any] = {"application_name": self.application_name}
        if self.max_parallel is not None:
            snap["max_parallel"] = self.max_parallel
        if self.schedule is not None:
            snap["schedule"] = self.schedule.cron
            snap["timezone"] = self.schedule.timezone
            snap["schedule_overlap"] = self.schedule.overlap
            snap["schedule_catchup"] = self.schedule.catchup
            snap["schedule_catchup_limit"] = self.schedule.catchup_limit
        # Only when used: a workflow without them keeps the hash it had before they existed.
        if self.params:
            snap["params"] = {name: spec.normalized() for name, spec in self.params.items()}
        if self.pass_env:
            snap["pass_env"] = sorted(self.pass_env)
        if self.notify:
            snap["notify"] = [rule.normalized() for rule in self.notify]
        if self.max_run_time is not None:
            snap["max_run_time"] = self.max_run_time
        if self.sla is not None:
            snap["sla"] = self.sla
        return snap

    def snapshot_text(self) -> str:
        """``json.dumps(self.snapshot())``, character for character, built a job at a time."""
        head = json.dumps(self._snapshot_head())
        jobs = ", ".join(_PLAIN.encode(job.normalized()) for job in self.jobs.values())
        return f'{head[:-1]}, "jobs": [{jobs}]}}'

    @cached_property
    def config_hash(self) -> str:
        """sha256 of the snapshot with keys and jobs sorted: same meaning, same hash. Exactly
        ``snapshot_hash(self.snapshot())``, fed to the hash a job at a time."""
        head = self._snapshot_head()
        digest = hashlib.sha256(b"{")
        for i, key in enumerate(sorted([*head, "jobs"])):
            digest.update(f"{',' if i else ''}{_CANONICAL.encode(key)}:".encode())
            if key != "jobs":
                digest.update(_CANONICAL.encode(head[key]).encode())
                continue
            digest.update(b"[")
            for k, job in enumerate(sorted(self.jobs.values(), key=lambda job: job.id)):
                digest.update(f"{',' if k else ''}{_CANONICAL.encode(job.normalized())}".encode())
            digest.update(b"]")
        digest.update(b"}")
        return digest.hexdigest()

    @cached_property
    def dag(self) -> Dag:
        """The job graph, built once per workflow (validation, planning and the coordinator share it)."""
        return Dag(self.jobs)

    def __len__(self) -> int:
        return len(self.jobs)


# json.dumps's default encoder, and the canonical one the hash is of: built once, not per job.
_PLAIN = json.JSONEncoder()
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def snapshot_hash(snapshot: dict[str, Any]) -> str:
    """The hash of a normalized snapshot (``Workflow.snapshot()``, or one read back from an attempt)."""
    return _exact_hash(_sorted(snapshot))


def _exact_hash(snap: dict[str, Any]) -> str:
    return hashlib.sha256(_CANONICAL.encode(snap).encode()).hexdigest()


def snapshot_has_hash(snapshot: dict[str, Any], expected: str) -> bool:
    """``snapshot_hash(snapshot) == expected``, five times faster on a large snapshot (100,000 jobs:
    0.75 -> 0.15 s). orjson writes the same canonical text byte for byte for ASCII text and plain
    numbers; where it could differ (non-ASCII keys, NaN, huge integers) its hash only misses, and
    json's exact text decides."""
    import orjson

    snap = _sorted(snapshot)
    try:
        if hashlib.sha256(orjson.dumps(snap, option=orjson.OPT_SORT_KEYS)).hexdigest() == expected:
            return True
    except (TypeError, orjson.JSONEncodeError):
        pass
    return _exact_hash(snap) == expected


def _sorted(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {**snapshot, "jobs": sorted(snapshot["jobs"], key=lambda j: j["id"])}
