from orchestrator.state import AuditAction, AuditFact, JobRowFact, derive_state
from workers.statuses import JobStatus as S


def row(attempt, job, status, code=None, retries=0):
    return JobRowFact(attempt, job, status, code, retries)


def test_latest_outcome_wins_and_skipped_rows_never_change_it():
    state = derive_state(
        [row(1, "a", S.FAILED, 1), row(2, "a", S.SUCCESS, 0, 2), row(3, "a", S.SKIPPED)],
        [],
    )
    assert state["a"].status is S.SUCCESS and state["a"].attempt_id == 2 and state["a"].retry_count == 2


def test_pending_rows_of_an_attempt_that_never_started_the_job_keep_the_older_outcome():
    state = derive_state([row(1, "a", S.FAILED, 2), row(2, "a", S.PENDING)], [])
    assert state["a"].status is S.FAILED


def test_unknown_jobs_are_pending():
    assert derive_state([], [])["zzz"].status is S.PENDING


def test_manual_actions_apply_in_order_between_attempts():
    rows = [row(1, "a", S.FAILED, 1), row(2, "a", S.FAILED, 1)]
    audits = [
        AuditFact(1, 10, AuditAction.MARK_SUCCESS, ("a",)),  # undone by attempt 2's outcome
        AuditFact(2, 11, AuditAction.MARK_SUCCESS, ("a",)),
        AuditFact(2, 12, AuditAction.ROLLBACK, ("a",)),
    ]
    assert derive_state(rows, audits)["a"].status is S.PENDING
    state = derive_state(rows, audits[:2])
    assert state["a"].status is S.SUCCESS and state["a"].marked and state["a"].attempt_id is None


def test_from_job_marks_belong_to_their_attempt():
    audits = [AuditFact(0, 1, AuditAction.MARK_SUCCESS, ("up",), attempt_id=1)]
    state = derive_state([row(1, "down", S.SUCCESS, 0)], audits)
    assert state["up"].marked and state["up"].attempt_id == 1 and state.is_success("down")


def test_a_run_after_a_mark_overrides_it():
    audits = [AuditFact(1, 1, AuditAction.MARK_SUCCESS, ("a",))]
    state = derive_state([row(1, "a", S.FAILED, 1), row(2, "a", S.TIMEOUT)], audits)
    assert state["a"].status is S.TIMEOUT and not state["a"].marked


def test_a_run_status_derives_from_effective_states_after_a_manual_action():
    from orchestrator.state import JobState, RunState, derived_run_status

    ok, failed = JobState(S.SUCCESS), JobState(S.FAILED)
    state = RunState({"a": ok, "b": failed})
    assert derived_run_status("FAILED", state, ["a", "b"], manual_after_last=False) == "FAILED"
    assert derived_run_status("FAILED", state, ["a", "b"], manual_after_last=True) == "FAILED"
    assert derived_run_status("FAILED", RunState({"a": ok, "b": ok}), ["a", "b"], True) == "SUCCESS"
    assert derived_run_status("SUCCESS", RunState({"a": ok}), ["a", "b"], True) == "PARTIAL"  # b PENDING
    assert derived_run_status("RUNNING", state, ["a", "b"], True) == "RUNNING"
