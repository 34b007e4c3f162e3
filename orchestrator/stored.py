"""A run's workflow as its last attempt stored it (the snapshot every resume, status and page uses).

Its own small module: readers (``status``, ``logs``, the web view, ``runs`` for a marked run) need
it without importing the coordinator and everything ``launch`` drives.

A snapshot was checked by the loader before it was stored, and its attempt row keeps its hash. Reading
it back through every check costs ~20 µs a job (2 s for 100,000 jobs), so when the snapshot still
hashes to its attempt's hash — it is exactly what was checked — its jobs are rebuilt directly from
their normalized form (``tests/test_stored.py`` holds the two ways equal). Anything else (an older
snapshot, a row edited by hand, a shape this code does not know) goes through every check as before.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from orchestrator.db.queries import RunRecord
from orchestrator.errors import UserError
from orchestrator.loader import workflow_from_data
from orchestrator.trigger_rules import TriggerRule
from orchestrator.workflow import JobDef, Workflow, snapshot_has_hash
from workers.retry import RetryPolicy


def stored_workflow(record: RunRecord) -> Workflow:
    if record.last_snapshot is None:
        raise UserError(f"run {record.run_id} has no attempt to take a workflow from")
    name = f"run {record.run_id} attempt {record.last_attempt.attempt_id}"
    expected = getattr(record.last_attempt, "config_hash", None)
    if expected:
        trusted = _rebuilt(record.last_snapshot, name, expected)
        if trusted is not None:
            return trusted
    return workflow_from_data(record.last_snapshot, name)


def _rebuilt(snapshot: dict[str, Any], name: str, expected: str) -> Workflow | None:
    try:
        jobs_data = snapshot["jobs"]
        if not jobs_data or not snapshot_has_hash(snapshot, expected):
            return None
        jobs = _jobs(jobs_data)
        # Everything but the jobs (schedule, params, alerts, limits) through the loader, with one
        # job standing in for all of them: small, and parsed by the one owner of those rules.
        stand_in = {k: v for k, v in jobs_data[0].items() if k not in ("dependencies", "trigger_rule")}
        rest = workflow_from_data({**snapshot, "jobs": [stand_in]}, name)
    except Exception:  # anything unexpected: the checked path decides
        return None
    return dataclasses.replace(rest, jobs=jobs)


def _jobs(data: list[dict[str, Any]]) -> dict[str, JobDef]:
    policies: dict[tuple, RetryPolicy] = {}
    jobs: dict[str, JobDef] = {}
    rules = TriggerRule._value2member_map_  # a dict lookup: Enum's constructor is slow over 100,000
    for d in data:
        statuses, codes = d.get("retry_on_status"), d.get("retry_on_exit_codes")
        retry_key = (
            d.get("max_retries"),
            d.get("retry_delay"),
            d.get("retry_backoff"),
            d.get("retry_jitter"),
            d.get("max_retry_delay"),
            d.get("max_retry_time"),
            None if statuses is None else tuple(statuses),
            None if codes is None else tuple(codes),
        )
        policy = policies.get(retry_key)
        if policy is None:
            policy = policies[retry_key] = RetryPolicy.from_dict(d)
        command = d["command"]
        jobs[d["id"]] = JobDef(
            d["id"],
            tuple(command) if isinstance(command, list) else command,
            tuple(d["dependencies"]),
            dict(d["env"]),
            d["working_dir"],
            d["timeout"],
            d["queue"],
            policy,
            rules[d.get("trigger_rule", TriggerRule.ALL_SUCCESS)],
            d.get("queue_timeout"),
        )
    if len(jobs) != len(data):
        raise ValueError("duplicate job ids")
    return jobs
