import json

import pytest

from orchestrator.errors import WorkflowError
from orchestrator.loader import load_workflow, workflow_from_data
from workers.statuses import JobStatus


def problems(data, name="wf.yaml") -> list[str]:
    with pytest.raises(WorkflowError) as info:
        workflow_from_data(data, name)
    return info.value.lines()


def wf(*jobs, **top):
    return {"application_name": "app", **top, "jobs": list(jobs)}


def test_defaults_are_merged_into_jobs_and_jobs_win():
    w = workflow_from_data(
        wf(
            {"id": "a", "command": "true"},
            {"id": "b", "command": ["echo", "x"], "dependencies": ["a"], "max_retries": 0},
            defaults={"max_retries": 2, "timeout": 9, "env": {"A": 1}, "queue": "q"},
        )
    )
    a, b = w.jobs["a"], w.jobs["b"]
    assert a.retry.max_retries == 2 and b.retry.max_retries == 0
    assert a.timeout == 9 and a.env == {"A": "1"} and a.queue == "q"
    assert b.command == ("echo", "x") and b.dependencies == ("a",)


def test_json_and_yaml_give_the_same_hash(tmp_path):
    data = wf({"id": "a", "command": "true", "env": {"X": "1", "Y": "2"}}, {"id": "b", "command": "true"})
    (tmp_path / "w.json").write_text(json.dumps(data))
    (tmp_path / "w.yaml").write_text(
        "jobs:\n- {id: b, command: 'true'}\n- {command: 'true', id: a, env: {Y: '2', X: '1'}}\n"
        "application_name: app\n"
    )
    assert load_workflow(tmp_path / "w.json").config_hash == load_workflow(tmp_path / "w.yaml").config_hash


def test_hash_changes_with_meaning():
    base = workflow_from_data(wf({"id": "a", "command": "true"}))
    changed = workflow_from_data(wf({"id": "a", "command": "false"}))
    same = workflow_from_data(wf({"id": "a", "command": "true", "max_retries": 0}))
    assert base.config_hash != changed.config_hash
    assert base.config_hash == same.config_hash  # defaults applied before hashing


def test_snapshot_round_trips():
    w = workflow_from_data(
        wf(
            {"id": "a", "command": ["ls", "-l"], "retry_on_exit_codes": [3], "timeout": 5},
            {"id": "b", "command": "x", "dependencies": ["a"]},
            max_parallel=3,
            schedule="*/5 * * * *",
        )
    )
    again = workflow_from_data(w.snapshot())
    assert again.snapshot() == w.snapshot() and again.config_hash == w.config_hash


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (wf({"id": "a", "command": "x", "colour": "red"}), "wf.yaml: job 'a': field 'colour': unknown key"),
        (wf({"id": "a", "command": "x"}, colour=1), "wf.yaml: field 'colour': unknown key"),
        (
            wf({"id": "a", "command": "x"}, {"id": "a", "command": "y"}),
            "job 'a': field 'id': duplicate job id",
        ),
        (
            wf({"id": "a", "command": "x", "dependencies": ["zz"]}),
            "job 'a': field 'dependencies': unknown job 'zz'",
        ),
        (wf({"id": "a b", "command": "x"}), "job '#1': field 'id': must match"),
        (wf({"command": "x"}), "job '#1': field 'id': is required"),
        (wf({"id": "a"}), "job 'a': field 'command': is required"),
        (wf({"id": "a", "command": ""}), "job 'a': field 'command'"),
        (wf({"id": "a", "command": [1, 2]}), "job 'a': field 'command'"),
        (wf({"id": "a", "command": "x", "timeout": -1}), "job 'a': field 'timeout': must be greater than 0"),
        (wf({"id": "a", "command": "x", "timeout": "10"}), "job 'a': field 'timeout': must be a number"),
        (
            wf({"id": "a", "command": "x", "max_retries": -2}),
            "job 'a': field 'max_retries': must not be negative",
        ),
        (wf({"id": "a", "command": "x", "max_retries": 1.5}), "field 'max_retries': must be a whole number"),
        (wf({"id": "a", "command": "x", "max_retries": True}), "field 'max_retries': must be a whole number"),
        (wf({"id": "a", "command": "x", "retry_delay": -1}), "field 'retry_delay': must not be negative"),
        (wf({"id": "a", "command": "x", "retry_jitter": -1}), "field 'retry_jitter': must not be negative"),
        (wf({"id": "a", "command": "x", "max_retry_delay": -1}), "field 'max_retry_delay'"),
        (wf({"id": "a", "command": "x", "max_retry_time": -1}), "field 'max_retry_time'"),
        (wf({"id": "a", "command": "x", "retry_backoff": 0}), "field 'retry_backoff'"),
        (wf({"id": "a", "command": "x", "retry_on_status": ["SUCCESS"]}), "field 'retry_on_status'"),
        (wf({"id": "a", "command": "x", "retry_on_exit_codes": [300]}), "field 'retry_on_exit_codes'"),
        (wf({"id": "a", "command": "x", "env": ["A=1"]}), "job 'a': field 'env': must be a mapping"),
        (wf({"id": "a", "command": "x", "env": {"A": [1]}}), "job 'a': field 'env': value of A"),
        (wf({"id": "a", "command": "x", "working_dir": 5}), "job 'a': field 'working_dir'"),
        (
            wf({"id": "a", "command": "x", "dependencies": "b"}),
            "job 'a': field 'dependencies': must be a list",
        ),
        (wf({"id": "a", "command": "x"}, max_parallel=0), "field 'max_parallel'"),
        (wf({"id": "a", "command": "x"}, defaults={"id": "z"}), "field 'defaults': unknown key 'id'"),
        (wf({"id": "a", "command": "x"}, defaults={"dependencies": []}), "field 'defaults'"),
        (wf({"id": "a", "command": "x"}, schedule="every day"), "field 'schedule': not a valid cron"),
        (wf({"id": "a", "command": "x"}, timezone="Mars/Base"), "field 'timezone'"),
        ({"jobs": [{"id": "a", "command": "x"}]}, "field 'application_name': is required"),
        ({"application_name": "", "jobs": [{"id": "a", "command": "x"}]}, "field 'application_name'"),
        ({"application_name": "a"}, "field 'jobs': is required"),
        ({"application_name": "a", "jobs": []}, "field 'jobs': must be a non-empty list"),
        (["not", "a", "mapping"], "wf.yaml: must be a mapping"),
    ],
)
def test_every_rule_names_file_job_and_field(data, expected):
    lines = problems(data)
    assert any(expected in line for line in lines), lines


def test_cycle_is_reported_with_its_path():
    lines = problems(
        wf(
            {"id": "a", "command": "x", "dependencies": ["c"]},
            {"id": "b", "command": "x", "dependencies": ["a"]},
            {"id": "c", "command": "x", "dependencies": ["b"]},
            {"id": "d", "command": "x"},
        )
    )
    assert len(lines) == 1
    path = lines[0].split("dependency cycle: ")[1]
    nodes = path.split(" -> ")
    assert nodes[0] == nodes[-1] and sorted(nodes[:-1]) == ["a", "b", "c"]


def test_self_dependency_is_a_cycle():
    assert "a -> a" in problems(wf({"id": "a", "command": "x", "dependencies": ["a"]}))[0]


def test_all_problems_are_listed_at_once():
    lines = problems(wf({"id": "a", "command": "x", "timeout": -1}, {"id": "b", "max_retries": "x"}))
    assert len(lines) >= 3  # a.timeout, b.command, b.max_retries


def test_a_bad_job_does_not_hide_behind_unknown_dependency_noise():
    lines = problems(wf({"id": "a", "timeout": -1}, {"id": "b", "command": "x", "dependencies": ["a"]}))
    assert not any("unknown job" in line for line in lines), lines


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(WorkflowError, match="file not found"):
        load_workflow(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    with pytest.raises(WorkflowError, match=r"bad.json: invalid JSON at line 1"):
        load_workflow(bad)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("jobs: [\n")
    with pytest.raises(WorkflowError, match=r"bad.yaml: invalid YAML"):
        load_workflow(bad_yaml)


def test_retry_fields_reach_the_policy():
    w = workflow_from_data(
        wf(
            {
                "id": "a",
                "command": "x",
                "max_retries": 2,
                "retry_delay": 1,
                "retry_on_status": ["FAILED"],
                "retry_on_exit_codes": [1, 2],
            }
        )
    )
    p = w.jobs["a"].retry
    assert p.max_retries == 2 and p.retry_delay == 1
    assert p.retry_on_status == {JobStatus.FAILED} and p.retry_on_exit_codes == {1, 2}


def test_schedule_fields():
    w = workflow_from_data(
        wf(
            {"id": "a", "command": "x"},
            schedule="0 2 * * *",
            timezone="Europe/Paris",
            schedule_overlap="allow",
            schedule_catchup="all",
            schedule_catchup_limit=3,
        )
    )
    assert w.schedule.cron == "0 2 * * *" and w.schedule.timezone == "Europe/Paris"
    assert (w.schedule.overlap, w.schedule.catchup, w.schedule.catchup_limit) == ("allow", "all", 3)


def test_jobs_with_the_same_retry_fields_share_one_policy():
    w = workflow_from_data(
        wf(
            {"id": "a", "command": "true", "max_retries": 2},
            {"id": "b", "command": "true", "max_retries": 2},
            {"id": "c", "command": "true", "max_retries": 3},
            {"id": "d", "command": "true", "retry_delay": 1},
            {"id": "e", "command": "true", "retry_delay": 1.0},
        )
    )
    jobs = w.jobs
    assert jobs["a"].retry is jobs["b"].retry and jobs["a"].retry is not jobs["c"].retry
    assert jobs["c"].retry.max_retries == 3 and jobs["d"].retry.retry_delay == 1.0
    assert jobs["d"].retry == jobs["e"].retry  # 1 and 1.0: equal policies, checked separately


def test_a_bad_retry_field_is_reported_for_every_job_that_has_it():
    found = problems(
        wf(
            {"id": "a", "command": "true", "retry_delay": -1},
            {"id": "b", "command": "true", "retry_delay": -1},
            {"id": "c", "command": "true", "retry_delay": True},
        )
    )
    assert sum("job 'a'" in p or "job a" in p for p in found) == 1, found
    assert len([p for p in found if "retry_delay" in p]) == 3, found


def test_line_endings_read_as_text_reads_them_and_the_digest_is_of_the_bytes(tmp_path):
    import hashlib

    text = "application_name: app\njobs:\n- id: a\n  command: |\n    echo one\n    echo two\n"
    unix = tmp_path / "unix.yaml"
    unix.write_bytes(text.encode())
    expected = load_workflow(unix)
    assert expected.jobs["a"].command == "echo one\necho two\n"
    assert expected.file_sha256 == hashlib.sha256(text.encode()).hexdigest()
    for ending in ("\r\n", "\r"):
        other = tmp_path / "other.yaml"
        other.write_bytes(text.replace("\n", ending).encode())
        loaded = load_workflow(other)
        assert loaded.jobs == expected.jobs and loaded.config_hash == expected.config_hash
        assert loaded.file_sha256 == hashlib.sha256(other.read_bytes()).hexdigest() != expected.file_sha256
    assert workflow_from_data(wf({"id": "a", "command": "true"})).file_sha256 is None
