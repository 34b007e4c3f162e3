import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.errors import UnknownJobError
from orchestrator.loader import workflow_from_data
from orchestrator.planner import PlanRequest, plan
from orchestrator.state import JobState, RunState
from workers.statuses import JobStatus, RunReason, SkipReason


def wf(edges: dict[str, list[str]]):
    data = {
        "application_name": "app",
        "jobs": [{"id": j, "command": "true", "dependencies": d} for j, d in edges.items()],
    }
    return workflow_from_data(data)


# a -> b -> d, a -> c -> d, d -> e ; x independent
DIAMOND = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": ["d"], "x": []}


def states(**kw) -> RunState:
    return RunState({j: JobState(JobStatus(s), 1) for j, s in kw.items()})


def test_fresh_run_runs_everything_in_topological_order():
    w = wf(DIAMOND)
    p = plan(w, RunState(), PlanRequest())
    assert p.will_run == w.dag.order and not p.will_skip
    assert w.dag.order.index("a") < w.dag.order.index("d") < w.dag.order.index("e")


def test_midstream_marks_ancestors_and_leaves_the_rest_not_selected():
    w = wf(DIAMOND)
    p = plan(w, RunState(), PlanRequest(from_jobs=("b",)))
    assert set(p.will_run) == {"b", "d", "e"}
    assert set(p.marks) == {"a", "c"}  # c feeds d: marked so d can run
    assert p.decisions["c"].reason == SkipReason.MARKED_SUCCESS
    assert p.decisions["x"].reason == SkipReason.NOT_SELECTED
    assert p.state.is_success("c") and p.state["c"].marked


def test_unknown_from_job():
    w = wf(DIAMOND)
    with pytest.raises(UnknownJobError, match="'nope'"):
        plan(w, RunState(), PlanRequest(from_jobs=("nope",)))


def test_resume_reruns_what_did_not_succeed():
    w = wf(DIAMOND)
    st_ = states(a="SUCCESS", b="FAILED", c="SUCCESS", d="UPSTREAM_FAILED", e="UPSTREAM_FAILED", x="SUCCESS")
    p = plan(w, st_, PlanRequest(resume=True))
    assert p.will_run == ["b", "d", "e"]
    assert p.decisions["a"].reason == SkipReason.ALREADY_SUCCEEDED


def test_failed_only_leaves_downstream_pending():
    w = wf(DIAMOND)
    st_ = states(a="SUCCESS", b="TIMEOUT", c="SUCCESS", d="UPSTREAM_FAILED", e="UPSTREAM_FAILED", x="ERROR")
    p = plan(w, st_, PlanRequest(resume=True, failed_only=True))
    assert set(p.will_run) == {"b", "x"}
    assert p.decisions["d"].reason == SkipReason.NOT_SELECTED
    assert p.decisions["b"].reason == RunReason.FAILED_BEFORE


def test_resume_from_job_rolls_back_descendants():
    w = wf(DIAMOND)
    everything = states(**{j: "SUCCESS" for j in DIAMOND})
    p = plan(w, everything, PlanRequest(resume=True, from_jobs=("c",)))
    assert set(p.rollbacks) == {"c", "d", "e"} and set(p.will_run) == {"c", "d", "e"}
    assert p.decisions["c"].reason == RunReason.ROLLED_BACK


def test_rerun_changed_reruns_descendants():
    w = wf(DIAMOND)
    everything = states(**{j: "SUCCESS" for j in DIAMOND})
    p = plan(w, everything, PlanRequest(resume=True, rerun=frozenset({"b"})))
    assert set(p.will_run) == {"b", "d", "e"}


def test_nothing_to_do():
    w = wf(DIAMOND)
    assert plan(w, states(**{j: "SUCCESS" for j in DIAMOND}), PlanRequest(resume=True)).nothing_to_do


def test_new_jobs_run_on_resume():
    w = wf({**DIAMOND, "n": ["e"]})
    st_ = states(**{j: "SUCCESS" for j in DIAMOND})
    p = plan(w, st_, PlanRequest(resume=True, new_jobs=frozenset({"n"})))
    assert p.will_run == ["n"] and p.decisions["n"].reason == RunReason.NEW_JOB


def test_failed_only_never_runs_a_job_whose_ancestor_is_unsatisfied():
    # b was force-marked SUCCESS while a is PENDING; c FAILED. failed-only must not run c.
    w = wf({"a": [], "b": ["a"], "c": ["b"]})
    st_ = RunState({"b": JobState(JobStatus.SUCCESS, None, marked=True), "c": JobState(JobStatus.FAILED, 1)})
    p = plan(w, st_, PlanRequest(resume=True, failed_only=True))
    assert p.will_run == []
    assert "upstream 'a'" in p.decisions["c"].detail


# -- properties on random DAGs and random prior states ---------------------------------------------

STATUS_CHOICES = [
    JobStatus.SUCCESS,
    JobStatus.FAILED,
    JobStatus.ERROR,
    JobStatus.TIMEOUT,
    JobStatus.UPSTREAM_FAILED,
    JobStatus.CANCELLED,
    JobStatus.PENDING,
    JobStatus.RUNNING,
]


@st.composite
def scenarios(draw):
    n = draw(st.integers(1, 14))
    ids = [f"j{i}" for i in range(n)]
    edges = {
        j: sorted(draw(st.sets(st.sampled_from(ids[:i]), max_size=3)) if i else []) for i, j in enumerate(ids)
    }
    prior = {
        j: JobState(draw(st.sampled_from(STATUS_CHOICES)), 1, marked=draw(st.booleans()))
        for j in ids
        if draw(st.booleans())
    }
    prior = {j: s if s.status is JobStatus.SUCCESS else JobState(s.status, 1) for j, s in prior.items()}
    request = PlanRequest(
        resume=draw(st.booleans()),
        failed_only=draw(st.booleans()),
        from_jobs=tuple(draw(st.sets(st.sampled_from(ids), max_size=2))),
        rerun=frozenset(draw(st.sets(st.sampled_from(ids), max_size=2))),
    )
    return edges, RunState(prior), request


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_every_job_that_runs_has_its_ancestors_satisfied_or_running(scenario):
    edges, state, request = scenario
    w = wf(edges)
    p = plan(w, state if request.resume else RunState(), request)
    runs = set(p.will_run)
    for job in runs:
        for ancestor in w.dag.ancestors([job]):
            assert p.state.is_success(ancestor) or ancestor in runs, (job, ancestor)


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_nothing_effectively_successful_reruns_without_rollback_or_change(scenario):
    edges, state, request = scenario
    if not request.resume:
        return
    w = wf(edges)
    p = plan(w, state, request)
    allowed = w.dag.with_descendants(request.from_jobs) | w.dag.with_descendants(request.rerun)
    for job in p.will_run:
        if state.is_success(job):
            assert job in allowed, job


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_every_job_gets_exactly_one_decision_with_a_reason(scenario):
    edges, state, request = scenario
    w = wf(edges)
    p = plan(w, state, request)
    assert list(p.decisions) == w.dag.order
    valid = {str(r) for r in RunReason} | {str(r) for r in SkipReason}
    assert all(d.reason in valid for d in p.decisions.values())
    assert all((d.reason in {str(r) for r in RunReason}) == d.runs for d in p.decisions.values())


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_plain_resume_reruns_every_job_that_is_not_successful(scenario):
    edges, state, _ = scenario
    w = wf(edges)
    p = plan(w, state, PlanRequest(resume=True))
    assert set(p.will_run) == {j for j in edges if not state.is_success(j)}
