"""Workflow changes between the last attempt's snapshot and the file given to ``resume``: pure.

``diff_workflows`` lists every difference; ``judge_changes`` applies the restart rules of SPEC to
them: what is refused, what goes through (and why), and which jobs ``--rerun-changed`` re-runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from orchestrator.state import RunState
from orchestrator.workflow import DEFINITION_FIELDS, Workflow
from workers.secrets import mask_env


class ChangeKind(StrEnum):
    ADDED = "added"  # a new job
    REMOVED = "removed"  # a job gone from the workflow
    DEPENDENCIES = "dependencies"  # an existing job's dependencies changed
    DEFINITION = "definition"  # command, env, working_dir or timeout of an existing job
    SETTING = "setting"  # any other field (queue, retries, max_parallel, schedule, ...)


class AllowedBy(StrEnum):
    RULE = "rule"  # the restart rules allow it as is
    FORCE = "force"
    RERUN_CHANGED = "rerun_changed"


@dataclass(frozen=True, slots=True)
class Change:
    kind: ChangeKind
    job: str | None
    field: str | None
    before: Any = None
    after: Any = None

    def __str__(self) -> str:
        where = f"job {self.job!r}" if self.job is not None else "workflow"
        if self.kind is ChangeKind.ADDED:
            return f"{where}: added"
        if self.kind is ChangeKind.REMOVED:
            return f"{where}: removed"
        before, after = self.shown()
        return f"{where}: {self.field}: {_show(before)} -> {_show(after)}"

    def shown(self) -> tuple[Any, Any]:
        """Before and after as they may be shown or stored: secret env values masked."""
        if self.field == "env":
            return mask_env(self.before), mask_env(self.after)
        return self.before, self.after

    def as_dict(self) -> dict:
        before, after = self.shown()
        return {
            "kind": str(self.kind),
            "job": self.job,
            "field": self.field,
            "before": before,
            "after": after,
        }


@dataclass(slots=True)
class Verdict:
    allowed: list[tuple[Change, AllowedBy]] = field(default_factory=list)
    refused: list[tuple[Change, str]] = field(default_factory=list)
    rerun: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.refused

    @property
    def forced(self) -> bool:
        return any(how is AllowedBy.FORCE for _, how in self.allowed)

    def refusal_lines(self) -> list[str]:
        return [f"{change} ({why})" for change, why in self.refused]

    def records(self) -> list[dict]:
        """What is stored with the attempt: every change that went through, and how."""
        return [{**c.as_dict(), "allowed_by": str(how)} for c, how in self.allowed]


def diff_workflows(old: Workflow, new: Workflow) -> list[Change]:
    if old is new or old.config_hash == new.config_hash:
        return []  # the same normalized workflow: nothing to compare job by job
    changes: list[Change] = []
    old_snap, new_snap = old.snapshot(), new.snapshot()
    for key in sorted((set(old_snap) | set(new_snap)) - {"jobs"}):
        if old_snap.get(key) != new_snap.get(key):
            changes.append(Change(ChangeKind.SETTING, None, key, old_snap.get(key), new_snap.get(key)))
    old_jobs = {j["id"]: j for j in old_snap["jobs"]}
    new_jobs = {j["id"]: j for j in new_snap["jobs"]}
    for job_id in old_jobs:
        if job_id not in new_jobs:
            changes.append(Change(ChangeKind.REMOVED, job_id, None))
    for job_id, after in new_jobs.items():
        before = old_jobs.get(job_id)
        if before is None:
            changes.append(Change(ChangeKind.ADDED, job_id, None))
            continue
        for key in after:
            if key == "id" or before.get(key) == after[key]:
                continue
            if key == "dependencies":
                kind = ChangeKind.DEPENDENCIES
            elif key in DEFINITION_FIELDS:
                kind = ChangeKind.DEFINITION
            else:
                kind = ChangeKind.SETTING
            changes.append(Change(kind, job_id, key, before.get(key), after[key]))
    return changes


def judge_changes(
    changes: list[Change], state: RunState, *, force: bool = False, rerun_changed: bool = False
) -> Verdict:
    verdict = Verdict()
    for change in changes:
        why = _refusal(change, state)
        if why is None:
            verdict.allowed.append((change, AllowedBy.RULE))
        elif change.kind is ChangeKind.DEFINITION and rerun_changed:
            verdict.allowed.append((change, AllowedBy.RERUN_CHANGED))
        elif force:
            verdict.allowed.append((change, AllowedBy.FORCE))
        else:
            verdict.refused.append((change, why))
        if rerun_changed and change.kind is ChangeKind.DEFINITION and change.job is not None:
            verdict.rerun.add(change.job)
    return verdict


def _refusal(change: Change, state: RunState) -> str | None:
    if change.kind is ChangeKind.REMOVED:
        return "a job was removed; use --force to drop it"
    if change.kind is ChangeKind.DEPENDENCIES:
        return "dependencies of an existing job changed; use --force"
    if change.kind is ChangeKind.DEFINITION and change.job is not None and state.is_success(change.job):
        return "the job already succeeded; use --rerun-changed to re-run it, or --force to keep it"
    return None


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if value is None:
        return "none"
    return str(value)
