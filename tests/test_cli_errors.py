"""Bad input through the CLI: one clear line per problem on stderr, exit 2, nothing written."""

from __future__ import annotations

import json

import pytest

BAD_WORKFLOWS = {
    "unknown key": (
        {"application_name": "a", "jobs": [{"id": "a", "command": "x", "retries": 1}]},
        "job 'a': field 'retries': unknown key",
    ),
    "duplicate id": (
        {"application_name": "a", "jobs": [{"id": "a", "command": "x"}, {"id": "a", "command": "y"}]},
        "job 'a': field 'id': duplicate job id",
    ),
    "unknown dependency": (
        {"application_name": "a", "jobs": [{"id": "a", "command": "x", "dependencies": ["q"]}]},
        "job 'a': field 'dependencies': unknown job 'q'",
    ),
    "cycle": (
        {
            "application_name": "a",
            "jobs": [
                {"id": "a", "command": "x", "dependencies": ["b"]},
                {"id": "b", "command": "x", "dependencies": ["a"]},
            ],
        },
        "dependency cycle: ",
    ),
    "bad type": (
        {"application_name": "a", "jobs": [{"id": "a", "command": "x", "timeout": "soon"}]},
        "job 'a': field 'timeout': must be a number",
    ),
    "negative": (
        {"application_name": "a", "jobs": [{"id": "a", "command": "x", "retry_delay": -3}]},
        "job 'a': field 'retry_delay': must not be negative",
    ),
    "missing name": ({"jobs": [{"id": "a", "command": "x"}]}, "field 'application_name': is required"),
}


@pytest.mark.parametrize("case", sorted(BAD_WORKFLOWS))
@pytest.mark.parametrize("command", ["run", "validate"])
def test_bad_workflows_are_refused_with_file_job_and_field(cli, work, home, case, command):
    data, expected = BAD_WORKFLOWS[case]
    path = work.root / "bad.json"
    path.write_text(json.dumps(data))
    r = cli(command, path)
    assert r.code == 2, r
    assert "Traceback" not in r.err and r.out == ""
    first = r.err.strip().splitlines()[0]
    assert first.startswith("executioner: ") and str(path) in first and expected in r.err, r.err
    if command == "run":
        assert cli("runs", "--json").json() == {"runs": []}  # nothing written


def test_cycle_message_names_the_cycle(cli, work):
    wf = work.workflow([work.job("a", ["c"]), work.job("b", ["a"]), work.job("c", ["b"])])
    err = cli("validate", wf).err
    cycle = err.split("dependency cycle: ")[1].split()[0:7]
    assert " ".join(cycle).count("->") == 3


def test_validate_json_lists_problems(cli, work):
    path = work.root / "bad.yaml"
    path.write_text("application_name: a\njobs:\n  - {id: a, command: x, timeout: -1, max_retries: -1}\n")
    r = cli("validate", path, "--json")
    assert r.code == 2
    data = r.json()
    assert data["valid"] is False and len(data["errors"]) == 2
    assert {p["field"] for p in data["problems"]} == {"timeout", "max_retries"}


def test_missing_file_and_unknown_ids(cli, work):
    r = cli("run", work.root / "nope.yaml")
    assert r.code == 2 and "file not found" in r.err
    for args in (
        ("status", 9),
        ("history", 9),
        ("resume", 9),
        ("logs", 9, "a"),
        ("mark-success", 9, "a"),
        ("rollback", 9, "a"),
    ):
        r = cli(*args)
        assert r.code == 2 and "run 9 does not exist" in r.err and "Traceback" not in r.err, (args, r)
    wf = work.workflow([work.job("a")])
    r = cli("run", wf, "--from-job", "zzz")
    assert r.code == 2 and "'zzz'" in r.err
    assert cli("runs", "--json").json() == {"runs": []}
    assert cli("run", wf).code == 0
    for args in (
        ("mark-success", 1, "zzz"),
        ("rollback", 1, "zzz"),
        ("resume", 1, "--from-job", "zzz"),
        ("history", 1, "--job", "zzz"),
    ):
        r = cli(*args)
        assert r.code == 2 and "zzz" in r.err, (args, r)


def test_usage_errors_exit_2(cli):
    r = cli("run")
    assert r.code == 2 and "Missing argument" in r.err
    assert cli("status", "not-a-number").code == 2


def test_bad_settings_are_user_errors(cli, work):
    wf = work.workflow([work.job("a")])
    r = cli("run", wf, env={"EXECUTIONER_LEASE_TTL": "soon"})
    assert r.code == 2 and "EXECUTIONER_LEASE_TTL" in r.err
    r = cli("run", wf, "--executor", "celery")
    assert r.code == 2 and "broker" in r.err


def test_logs_of_a_job_that_never_ran_is_a_note_not_an_unknown_id(cli, work):
    wf = work.workflow([work.job("a", command="exit 3"), work.job("b", ["a"])])
    assert cli("run", wf).code == 1
    r = cli("logs", 1, "b")
    assert r.code == 0 and "job b: UPSTREAM_FAILED, it did not run" in r.err, r
    r = cli("logs", 1, "nope")
    assert r.code == 2 and "unknown job id(s) in run 1: 'nope'" in r.err, r
