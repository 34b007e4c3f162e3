"""Trigger rules: when a job runs, given how its dependencies ended (pure, one place).

``all_success`` (the default) runs a job once every dependency is SUCCESS. The others make cleanup
and notification jobs possible: ``all_done`` runs once every dependency ended, whatever the outcome;
``one_failed`` once every dependency ended and at least one failed; ``all_failed`` when every one
failed; ``none_failed`` when none failed (SUCCESS, or skipped by its own rule).

"Failed" is FAILED, ERROR, TIMEOUT or UPSTREAM_FAILED. A job whose rule is not met is SKIPPED with
reason ``trigger_rule`` (nothing to do, nothing wrong: the run can still be SUCCESS); one that can no
longer be met because something failed is UPSTREAM_FAILED (``all_success``, ``none_failed``).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from workers.statuses import EXIT_1_JOB_STATUSES, JobStatus


class TriggerRule(StrEnum):
    ALL_SUCCESS = "all_success"
    ALL_DONE = "all_done"
    ONE_FAILED = "one_failed"
    ALL_FAILED = "all_failed"
    NONE_FAILED = "none_failed"


class Verdict(StrEnum):
    RUN = "run"
    SKIP = "skip"  # SKIPPED, reason trigger_rule
    UPSTREAM_FAILED = "upstream_failed"
    WAIT = "wait"  # not every dependency has ended


FAILED = EXIT_1_JOB_STATUSES
ENDED = frozenset({JobStatus.SUCCESS, JobStatus.SKIPPED, *FAILED})


def fails_eagerly(rule: TriggerRule) -> bool:
    """Rules that cannot be met once one dependency failed: decided at once, not when all ended."""
    return rule in (TriggerRule.ALL_SUCCESS, TriggerRule.NONE_FAILED)


def evaluate(rule: TriggerRule, parents: Iterable[JobStatus]) -> Verdict:
    """``parents``: how each dependency ended (SKIPPED = skipped by its own rule)."""
    statuses = list(parents)
    failed = [s in FAILED for s in statuses]
    if fails_eagerly(rule) and any(failed):
        return Verdict.UPSTREAM_FAILED
    if not all(s in ENDED for s in statuses):
        return Verdict.WAIT
    if rule is TriggerRule.ALL_SUCCESS:
        return Verdict.RUN if all(s is JobStatus.SUCCESS for s in statuses) else Verdict.SKIP
    if rule is TriggerRule.ALL_DONE or rule is TriggerRule.NONE_FAILED:
        return Verdict.RUN
    if rule is TriggerRule.ONE_FAILED:
        return Verdict.RUN if any(failed) else Verdict.SKIP
    return Verdict.RUN if statuses and all(failed) else Verdict.SKIP  # ALL_FAILED
