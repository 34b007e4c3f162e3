"""Trigger rules: the pure verdict, the planner's invariant and the coordinator's behaviour under them."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.errors import WorkflowError
from orchestrator.loader import workflow_from_data
from orchestrator.planner import PlanRequest, plan
from orchestrator.state import JobState, RunState
from orchestrator.trigger_rules import FAILED, TriggerRule, Verdict, evaluate
from workers.statuses import AttemptStatus, JobStatus, SkipReason

S, F, U, K, P = (
    JobStatus.SUCCESS,
    JobStatus.FAILED,
    JobStatus.UPSTREAM_FAILED,
    JobStatus.SKIPPED,
    JobStatus.PENDING,
)
R = TriggerRule


@pytest.mark.parametrize(
    ("rule", "parents", "verdict"),
    [
        (R.ALL_SUCCESS, [S, S], Verdict.RUN),
        (R.ALL_SUCCESS, [S, F], Verdict.UPSTREAM_FAILED),
        (R.ALL_SUCCESS, [P, F], Verdict.UPSTREAM_FAILED),  # decided at once
        (R.ALL_SUCCESS, [S, K], Verdict.SKIP),  # a skip propagates
        (R.ALL_SUCCESS, [S, P], Verdict.WAIT),
        (R.ALL_DONE, [S, F], Verdict.RUN),
        (R.ALL_DONE, [U, K], Verdict.RUN),
        (R.ALL_DONE, [F, P], Verdict.WAIT),
        (R.ONE_FAILED, [S, F], Verdict.RUN),
        (R.ONE_FAILED, [S, U], Verdict.RUN),
        (R.ONE_FAILED, [S, S], Verdict.SKIP),
        (R.ONE_FAILED, [F, P], Verdict.WAIT),
        (R.ALL_FAILED, [F, JobStatus.TIMEOUT], Verdict.RUN),
        (R.ALL_FAILED, [F, S], Verdict.SKIP),
        (R.NONE_FAILED, [S, K], Verdict.RUN),
        (R.NONE_FAILED, [S, JobStatus.ERROR], Verdict.UPSTREAM_FAILED),
    ],
)
def test_verdicts(rule, parents, verdict):
    assert evaluate(rule, parents) is verdict


def wf(edges, rules=None):
    rules = rules or {}
    return workflow_from_data(
        {
            "application_name": "app",
            "jobs": [
                {
                    "id": j,
                    "command": "true",
                    "dependencies": d,
                    **({"trigger_rule": rules[j]} if j in rules else {}),
                }
                for j, d in edges.items()
            ],
        }
    )


def test_the_loader_checks_rules():
    with pytest.raises(WorkflowError, match="must be one of all_success"):
        wf({"a": [], "b": ["a"]}, {"b": "sometimes"})
    with pytest.raises(WorkflowError, match="needs dependencies"):
        wf({"a": []}, {"a": "all_done"})
    plain, ruled = wf({"a": [], "b": ["a"]}), wf({"a": [], "b": ["a"]}, {"b": "all_done"})
    assert plain.config_hash == wf({"a": [], "b": ["a"]}, {"b": "all_success"}).config_hash
    assert (
        ruled.config_hash != plain.config_hash and ruled.snapshot()["jobs"][1]["trigger_rule"] == "all_done"
    )


def test_resume_decides_a_rule_whose_dependencies_all_ended_before():
    w = wf({"a": [], "cleanup": ["a"], "notify": ["a"]}, {"cleanup": "all_done", "notify": "one_failed"})
    ok = RunState({"a": JobState(S, 1)})
    p = plan(w, ok, PlanRequest(resume=True))
    assert p.will_run == ["cleanup"]
    assert p.decisions["notify"].reason == SkipReason.TRIGGER_RULE
    failed = RunState({"a": JobState(F, 1), "cleanup": JobState(S, 1), "notify": JobState(S, 1)})
    assert plan(w, failed, PlanRequest(resume=True)).will_run == ["a"]  # cleanups already ran for it
    only_failed = RunState({"a": JobState(F, 1)})
    p = plan(w, only_failed, PlanRequest(resume=True, failed_only=True))
    assert p.will_run == ["a"]  # its cleanups wait in the same attempt (they are not failed)


RULES = list(TriggerRule)
STATUSES = [S, F, JobStatus.ERROR, U, JobStatus.CANCELLED, P]


@st.composite
def scenarios(draw):
    n = draw(st.integers(1, 12))
    ids = [f"j{i}" for i in range(n)]
    edges = {
        j: sorted(draw(st.sets(st.sampled_from(ids[:i]), max_size=3))) if i else [] for i, j in enumerate(ids)
    }
    rules = {j: draw(st.sampled_from(RULES)) for j in ids if edges[j]}
    prior = {j: JobState(draw(st.sampled_from(STATUSES)), 1) for j in ids if draw(st.booleans())}
    request = PlanRequest(resume=True, failed_only=draw(st.booleans()))
    return edges, rules, RunState(prior), request


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_every_job_that_runs_has_each_dependency_running_or_ended_as_its_rule_allows(scenario):
    edges, rules, state, request = scenario
    w = wf(edges, rules)
    p = plan(w, state, request)
    runs = set(p.will_run)
    for job in runs:
        rule = w.jobs[job].trigger_rule
        for parent in edges[job]:
            ended = state[parent].status
            allowed = ended is S or (rule in (R.ALL_DONE, R.ONE_FAILED, R.ALL_FAILED) and ended in FAILED)
            assert parent in runs or allowed, (job, parent, rule, ended)


# -- the coordinator, with the stub executor ---------------------------------------------------------

from tests.test_coordinator import ctx, fail, run_attempt  # noqa: E402, F401 - shared fixtures


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_dags_with_rules_end_as_the_rules_say(ctx, data):  # noqa: F811
    n = data.draw(st.integers(1, 10))
    ids = [f"j{i}" for i in range(n)]
    edges = {
        j: sorted(data.draw(st.sets(st.sampled_from(ids[:i]), max_size=3))) if i else []
        for i, j in enumerate(ids)
    }
    rules = {j: data.draw(st.sampled_from(RULES)) for j in ids if edges[j]}
    failing = data.draw(st.sets(st.sampled_from(ids)))
    result, executor = run_attempt(ctx, wf(edges, rules), fail(*failing))
    ran = {t.job_id for t in executor.submitted}
    for job in ids:
        status = result.jobs[job].status
        verdict = evaluate(rules.get(job, R.ALL_SUCCESS), [result.jobs[d].status for d in edges[job]])
        if verdict is Verdict.RUN:
            assert job in ran and status is (F if job in failing else S), (job, verdict, status)
        else:
            assert job not in ran, (job, verdict)
            assert status is (U if verdict is Verdict.UPSTREAM_FAILED else K), (job, verdict, status)
    any_failed = any(result.jobs[j].status in FAILED for j in ids)
    assert (result.status is AttemptStatus.FAILED) == any_failed
    if not any_failed:
        assert result.status is AttemptStatus.SUCCESS  # rule skips are nothing wrong
