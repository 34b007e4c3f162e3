"""A stored snapshot read back without the loader's per-job checks, trusted only when its hash says it
is exactly what was checked when it was stored."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.errors import WorkflowError
from orchestrator.loader import workflow_from_data
from orchestrator.stored import _rebuilt, stored_workflow

RULES = ["all_success", "all_done", "one_failed", "none_failed", "all_failed"]


@st.composite
def workflows(draw):
    n = draw(st.integers(1, 12))
    jobs = []
    for i in range(n):
        job = {
            "id": f"j{i}",
            "command": draw(st.sampled_from(["true", ["sh", "-c", "exit 3"], "echo {{ ds }}"])),
        }
        deps = (
            sorted(set(draw(st.lists(st.sampled_from([f"j{k}" for k in range(i)]), max_size=3)))) if i else []
        )
        if deps:
            job["dependencies"] = deps
            job["trigger_rule"] = draw(st.sampled_from(RULES))
        for key, values in {
            "max_retries": st.integers(0, 5),
            "retry_delay": st.sampled_from([0, 1, 2.5]),
            "retry_on_status": st.sampled_from([["FAILED"], ["ERROR", "TIMEOUT"]]),
            "retry_on_exit_codes": st.sampled_from([[1, 2], [3]]),
            "timeout": st.sampled_from([1, 60.5]),
            "queue": st.sampled_from(["default", "gpu"]),
            "queue_timeout": st.sampled_from([5, 30.0]),
            "env": st.sampled_from([{"A": "1"}, {"S": {"from_env": "SECRET"}}]),
            "working_dir": st.sampled_from(["/tmp", "/"]),
        }.items():
            if draw(st.booleans()):
                job[key] = draw(values)
        jobs.append(job)
    data = {"application_name": "app", "jobs": jobs}
    if draw(st.booleans()):
        data.update(schedule="0 3 * * *", timezone="Europe/Paris", max_parallel=3)
    if draw(st.booleans()):
        data["params"] = {"day": {"type": "date", "required": False}}
    return data


def record(snapshot, config_hash):
    attempt = SimpleNamespace(attempt_id=1, config_hash=config_hash)
    return SimpleNamespace(run_id=7, last_snapshot=snapshot, last_attempt=attempt)


@settings(max_examples=150, deadline=None)
@given(workflows())
def test_the_trusted_read_equals_the_checked_one(data):
    checked = workflow_from_data(data)
    snapshot = checked.snapshot()
    assert _rebuilt(snapshot, "run 7 attempt 1", checked.config_hash) is not None  # the fast path held
    fast = stored_workflow(record(snapshot, checked.config_hash))
    slow = workflow_from_data(snapshot, "run 7 attempt 1")
    assert fast.jobs == slow.jobs and list(fast.jobs) == list(slow.jobs)
    assert fast.config_hash == slow.config_hash == checked.config_hash
    assert (fast.schedule, fast.params, fast.max_parallel, fast.notify) == (
        slow.schedule,
        slow.params,
        slow.max_parallel,
        slow.notify,
    )


def test_a_snapshot_that_does_not_hash_to_its_attempt_goes_through_every_check():
    checked = workflow_from_data({"application_name": "app", "jobs": [{"id": "a", "command": "true"}]})
    snapshot = checked.snapshot()
    snapshot["jobs"][0]["command"] = "\x00"  # edited by hand after it was stored
    with pytest.raises(WorkflowError, match="NUL"):
        stored_workflow(record(snapshot, checked.config_hash))
    tampered = {**snapshot, "jobs": [{**snapshot["jobs"][0], "command": "rm -rf /tmp/x"}]}
    read = stored_workflow(record(tampered, checked.config_hash))  # valid, but not what was stored:
    assert read.jobs["a"].command == "rm -rf /tmp/x"  # read the checked way, still what the row says
    assert read.config_hash != checked.config_hash


def test_an_attempt_without_a_hash_is_read_the_checked_way():
    checked = workflow_from_data({"application_name": "app", "jobs": [{"id": "a", "command": "true"}]})
    assert stored_workflow(record(checked.snapshot(), None)).jobs == checked.jobs


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)  # past 64 bits: orjson refuses them
    | st.floats(allow_nan=True)  # 1e-05, nan, inf: json and orjson write some differently
    | st.text(max_size=8),  # non-ASCII: json escapes it, orjson does not
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.dictionaries(st.text(max_size=4), JSON_VALUES, max_size=4), min_size=1, max_size=4), st.data()
)
def test_the_fast_hash_check_agrees_with_the_exact_hash_whatever_the_values(extras, data):
    from orchestrator.workflow import snapshot_has_hash, snapshot_hash

    jobs = [{**extra, "id": f"j{i}"} for i, extra in enumerate(extras)]
    snapshot = {"application_name": data.draw(st.text(max_size=6)), "jobs": jobs}
    exact = snapshot_hash(snapshot)
    assert snapshot_has_hash(snapshot, exact)
    other = snapshot_hash({**snapshot, "application_name": "other" + snapshot["application_name"]})
    assert not snapshot_has_hash(snapshot, other)


@settings(max_examples=200, deadline=None)
@given(
    workflows(),
    st.text(min_size=1, max_size=8).filter(str.strip),
    st.sampled_from(["true", 'éch ✓ "q" \\ \u2028', ["prog", "ü", ""]]),
    st.booleans(),
)
def test_the_hash_and_the_stored_text_built_a_job_at_a_time_equal_the_whole_snapshots(
    data, name, command, extras
):
    """A 100,000-job snapshot is never built whole for its hash or its row: both must come out
    exactly as from the whole snapshot (the row is read back and trusted by that hash)."""
    import json

    from orchestrator.workflow import snapshot_hash

    data = {**data, "application_name": name, "jobs": [*data["jobs"], {"id": "z", "command": command}]}
    if extras:
        data |= {
            "pass_env": ["B_VAR", "A_VAR"],
            "max_run_time": 90.5,
            "sla": 60,
            "notify": [{"on": ["failure"], "command": "cat > /dev/null"}],
        }
    try:
        w = workflow_from_data(data)
    except WorkflowError:
        return  # an application name the loader refuses
    assert w.config_hash == snapshot_hash(w.snapshot())
    assert w.snapshot_text() == json.dumps(w.snapshot())
    assert workflow_from_data(json.loads(w.snapshot_text())).config_hash == w.config_hash
