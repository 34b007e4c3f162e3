import pytest

from workers.statuses import (
    JOB_TRANSITIONS,
    AttemptStatus,
    IllegalTransition,
    JobStatus,
    attempt_outcome,
    check_attempt_transition,
    check_job_transition,
)


def test_every_status_has_a_transition_rule():
    assert set(JOB_TRANSITIONS) == set(JobStatus)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (JobStatus.PENDING, JobStatus.QUEUED),
        (JobStatus.QUEUED, JobStatus.RUNNING),
        (JobStatus.RUNNING, JobStatus.SUCCESS),
        (JobStatus.RUNNING, JobStatus.TIMEOUT),
        (JobStatus.PENDING, JobStatus.UPSTREAM_FAILED),
        (JobStatus.RUNNING, JobStatus.QUEUED),  # a lost worker's try re-dispatched
        (JobStatus.ERROR, JobStatus.SUCCESS),  # an interrupted job whose result arrived later
    ],
)
def test_legal_job_transitions(before, after):
    assert check_job_transition(before, after) is after


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (JobStatus.SUCCESS, JobStatus.FAILED),
        (JobStatus.SUCCESS, JobStatus.RUNNING),
        (JobStatus.PENDING, JobStatus.SUCCESS),  # must be dispatched first
        (JobStatus.SKIPPED, JobStatus.QUEUED),
        (JobStatus.UPSTREAM_FAILED, JobStatus.QUEUED),
        (JobStatus.FAILED, JobStatus.SUCCESS),
    ],
)
def test_illegal_job_transitions(before, after):
    with pytest.raises(IllegalTransition):
        check_job_transition(before, after)


def test_terminal_attempts_never_change():
    for status in AttemptStatus:
        if status is AttemptStatus.RUNNING:
            continue
        for after in AttemptStatus:
            with pytest.raises(IllegalTransition):
                check_attempt_transition(status, after)


def test_attempt_outcome_rules():
    assert attempt_outcome(all_success=True, any_failure=False) is AttemptStatus.SUCCESS
    assert attempt_outcome(all_success=False, any_failure=True) is AttemptStatus.FAILED
    assert attempt_outcome(all_success=False, any_failure=False) is AttemptStatus.PARTIAL
    assert attempt_outcome(all_success=False, any_failure=True, cancelled=True) is AttemptStatus.CANCELLED


def test_failure_statuses():
    assert {s for s in JobStatus if s.is_failure} == {JobStatus.FAILED, JobStatus.ERROR, JobStatus.TIMEOUT}


def test_the_cli_spells_the_attempt_statuses_this_module_owns():
    from orchestrator.cli.main import ATTEMPT_STATUSES

    assert set(ATTEMPT_STATUSES) == {str(s) for s in AttemptStatus}
