"""Run parameters: declarations in the workflow, values from the command line or a file, their types."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from orchestrator.errors import UserError, WorkflowError
from orchestrator.loader import workflow_from_data
from orchestrator.params import (
    ParamError,
    ParamSpec,
    coerce,
    env_value,
    parse_assignments,
    resolve,
    template_value,
)
from orchestrator.run_inputs import new_run_inputs

PARIS = ZoneInfo("Europe/Paris")


def wf(params=None, **top):
    return workflow_from_data(
        {"application_name": "p", **top, "params": params, "jobs": [{"id": "a", "command": "true"}]},
        "wf.yaml",
    )


@pytest.mark.parametrize(
    ("kind", "raw", "expected"),
    [
        ("string", "abc", "abc"),
        ("string", 12, "12"),
        ("int", "42", 42),
        ("int", " -7 ", -7),
        ("int", 3, 3),
        ("float", "2.5", 2.5),
        ("float", 2, 2.0),
        ("bool", "yes", True),
        ("bool", "False", False),
        ("bool", True, True),
        ("date", "2026-02-28", "2026-02-28"),
        ("date", date(2026, 2, 28), "2026-02-28"),
        ("datetime", "2026-03-29T02:30:00+02:00", "2026-03-29T00:30:00+00:00"),
        ("datetime", "2026-07-01T12:00", "2026-07-01T10:00:00+00:00"),  # no offset: the schedule's zone
        ("datetime", "2026-07-01", "2026-06-30T22:00:00+00:00"),  # a date: its midnight there
    ],
)
def test_values_are_coerced_to_their_type(kind, raw, expected):
    assert coerce(ParamSpec("x", kind), raw, PARIS) == expected


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        ("int", "4.5"),
        ("int", "1" * 30),
        ("int", True),
        ("int", "0x10"),
        ("float", "nan"),
        ("float", "inf"),
        ("float", "1e999"),
        ("bool", "maybe"),
        ("date", "2026-02-30"),
        ("date", "27/11/2026"),
        ("datetime", "yesterday"),
        ("datetime", "9" * 100),
        ("string", "a\x00b"),
        ("string", "\udc80"),
        ("string", "x" * 70_000),
        ("string", ["a"]),
    ],
)
def test_bad_values_are_refused(kind, raw):
    with pytest.raises(ParamError):
        coerce(ParamSpec("x", kind), raw)


def test_resolve_applies_defaults_and_lists_every_problem():
    specs = {
        "day": ParamSpec("day", "date", required=True),
        "mode": ParamSpec("mode", "string", default="full", choices=("full", "delta")),
        "n": ParamSpec("n", "int"),
    }
    assert resolve(specs, {"day": "2026-11-27"}) == {"day": "2026-11-27", "mode": "full", "n": None}
    with pytest.raises(ParamError) as exc:
        resolve(specs, {"mode": "other", "nope": "1"})
    text = str(exc.value)
    assert "unknown parameter 'nope'" in text
    assert "'mode' (string) must be one of full, delta" in text
    assert "'day' is required" in text
    # validate checks templates with stand-ins for required values it was not given
    assert resolve(specs, {}, placeholders=True)["day"] == "2000-01-01"


def test_template_and_environment_forms():
    assert template_value(ParamSpec("d", "date"), "2026-11-27") == date(2026, 11, 27)
    when = template_value(ParamSpec("t", "datetime"), "2026-07-01T10:00:00+00:00", PARIS)
    assert when == datetime(2026, 7, 1, 10, tzinfo=UTC) and when.utcoffset().total_seconds() == 7200
    assert (env_value(True), env_value(None), env_value(3)) == ("true", "", "3")


def test_assignments_from_the_command_line():
    assert parse_assignments(["a=1", "b=x=y", "a=2"]) == {"a": "2", "b": "x=y"}
    with pytest.raises(ParamError, match="NAME=VALUE"):
        parse_assignments(["novalue"])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"1x": {}}, "parameter name must match"),
        ({"x": {"type": "decimal"}}, "type must be one of"),
        ({"x": {"type": "int", "default": "abc"}}, "default must be a whole number"),
        ({"x": {"default": "c", "choices": ["a", "b"]}}, "default must be one of a, b"),
        ({"x": {"required": True, "default": "a"}}, "a required parameter has no default"),
        ({"x": {"colour": 1}}, "unknown key 'colour'"),
        ({"x": {}, "X": {}}, "EXECUTIONER_PARAM_X would be 'x' and 'X'"),
        ([1, 2], "must be a mapping"),
    ],
)
def test_bad_declarations_name_the_field(params, message):
    with pytest.raises(WorkflowError) as exc:
        wf(params)
    assert message in str(exc.value) and "params" in str(exc.value)


def test_pass_env_refuses_secret_names_and_our_own():
    with pytest.raises(WorkflowError) as exc:
        wf(None, pass_env=["API_TOKEN", "EXECUTIONER_HOME", "OK_NAME"])
    text = "\n".join(exc.value.lines())
    assert "API_TOKEN looks like a secret" in text and "from_env" in text
    assert "EXECUTIONER_HOME" in text and "OK_NAME" not in text


def test_declarations_are_part_of_the_snapshot_only_when_present():
    plain = wf()
    assert "params" not in plain.snapshot() and "pass_env" not in plain.snapshot()
    with_params = wf({"n": {"type": "int", "default": 2}}, pass_env=["B", "A"])
    snap = with_params.snapshot()
    assert snap["params"] == {"n": {"type": "int", "required": False, "default": 2}}
    assert snap["pass_env"] == ["A", "B"]
    assert workflow_from_data(snap).config_hash == with_params.config_hash  # round trip


def test_new_run_inputs_capture_pass_env_and_refuse_bad_logical_dates():
    workflow = wf({"n": {"type": "int", "default": 1}}, pass_env=["KEEP", "ABSENT"])
    inputs = new_run_inputs(
        workflow, logical_date="2026-11-27", environ={"KEEP": "v", "OTHER": "no"}, given={"n": "5"}
    )
    assert inputs.pass_env == {"KEEP": "v"} and inputs.params == {"n": 5}
    assert inputs.interval.logical_date == datetime(2026, 11, 27, tzinfo=UTC)
    assert inputs.job_env(workflow)["EXECUTIONER_PARAM_N"] == "5"
    assert inputs.job_env(workflow)["EXECUTIONER_LOGICAL_DATE"] == "2026-11-27T00:00:00+00:00"
    with pytest.raises(UserError, match="--logical-date"):
        new_run_inputs(workflow, logical_date="not a date", environ={})


def test_a_parameter_declared_after_the_run_began_gets_its_default_or_is_refused():
    from orchestrator.run_inputs import runnable

    inputs = new_run_inputs(wf({"n": {"type": "int", "default": 1}}), environ={})
    later = workflow_from_data(
        {
            "application_name": "p",
            "params": {"n": {"type": "int"}, "m": {"default": "x"}},
            "jobs": [{"id": "a", "command": "echo {{ params.n }} {{ params.m }}"}],
        },
        "wf.yaml",
    )
    assert runnable(later, inputs, 1).jobs["a"].command == "echo 1 x"
    required = workflow_from_data(
        {
            "application_name": "p",
            "params": {"r": {"required": True}},
            "jobs": [{"id": "a", "command": "true"}],
        },
        "wf.yaml",
    )
    with pytest.raises(UserError, match="'r' is new and required"):
        runnable(required, inputs, 1)
