from orchestrator.changes import AllowedBy, ChangeKind, diff_workflows, judge_changes
from orchestrator.loader import workflow_from_data
from orchestrator.state import JobState, RunState
from workers.statuses import JobStatus


def wf(*jobs, **top):
    return workflow_from_data({"application_name": "app", **top, "jobs": list(jobs)})


OLD = wf(
    {"id": "a", "command": "echo a"},
    {"id": "b", "command": "echo b", "dependencies": ["a"]},
    {"id": "c", "command": "echo c", "dependencies": ["b"]},
)
A_OK = RunState({"a": JobState(JobStatus.SUCCESS, 1, 0), "b": JobState(JobStatus.FAILED, 1, 1)})


def test_no_change_no_diff():
    assert diff_workflows(OLD, OLD) == []


def test_every_kind_is_listed():
    new = wf(
        {"id": "a", "command": "echo A", "max_retries": 2},
        {"id": "b", "command": "echo b"},
        {"id": "d", "command": "echo d"},
    )
    kinds = {(c.kind, c.job, c.field) for c in diff_workflows(OLD, new)}
    assert (ChangeKind.DEFINITION, "a", "command") in kinds
    assert (ChangeKind.SETTING, "a", "max_retries") in kinds
    assert (ChangeKind.DEPENDENCIES, "b", "dependencies") in kinds
    assert (ChangeKind.REMOVED, "c", None) in kinds
    assert (ChangeKind.ADDED, "d", None) in kinds


def test_changed_definition_of_a_succeeded_job_is_refused_with_before_and_after():
    new = wf(
        {"id": "a", "command": "echo A"},
        {"id": "b", "command": "echo b", "dependencies": ["a"]},
        {"id": "c", "command": "echo c", "dependencies": ["b"]},
    )
    verdict = judge_changes(diff_workflows(OLD, new), A_OK)
    assert not verdict.ok
    (line,) = verdict.refusal_lines()
    assert "job 'a': command: 'echo a' -> 'echo A'" in line


def test_changed_definition_of_a_job_that_did_not_succeed_is_allowed():
    new = wf(
        {"id": "a", "command": "echo a"},
        {"id": "b", "command": "echo B", "dependencies": ["a"]},
        {"id": "c", "command": "echo c", "dependencies": ["b"]},
    )
    verdict = judge_changes(diff_workflows(OLD, new), A_OK)
    assert verdict.ok and verdict.records()[0]["allowed_by"] == AllowedBy.RULE


def test_force_allows_everything_and_is_recorded():
    new = wf({"id": "a", "command": "echo A"})
    verdict = judge_changes(diff_workflows(OLD, new), A_OK, force=True)
    assert verdict.ok and verdict.forced
    assert {r["allowed_by"] for r in verdict.records()} == {"force"}
    assert not verdict.rerun


def test_rerun_changed_allows_definitions_only():
    new = wf(
        {"id": "a", "command": "echo A"},
        {"id": "b", "command": "echo b", "dependencies": ["a"]},
        {"id": "c", "command": "echo c", "dependencies": ["b"]},
    )
    verdict = judge_changes(diff_workflows(OLD, new), A_OK, rerun_changed=True)
    assert verdict.ok and verdict.rerun == {"a"}
    removed = wf({"id": "a", "command": "echo A"})
    assert not judge_changes(diff_workflows(OLD, removed), A_OK, rerun_changed=True).ok


def test_new_jobs_are_allowed():
    new = wf(
        {"id": "a", "command": "echo a"},
        {"id": "b", "command": "echo b", "dependencies": ["a"]},
        {"id": "c", "command": "echo c", "dependencies": ["b"]},
        {"id": "n", "command": "x", "dependencies": ["c"]},
    )
    assert judge_changes(diff_workflows(OLD, new), A_OK).ok
