"""Generated hostile input: thousands of workflow files and argument lists, zero internal errors.

Every refusal is exit 2 with one line per problem, and a refused command writes nothing. The CLI runs
in-process here (click's runner) so that 1,000+ cases take seconds; ``test_cli_errors`` and
``test_hostile_input`` run the same paths through the installed command.
"""

from __future__ import annotations

import contextlib
import json

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.cli.main import cli
from orchestrator.errors import WorkflowError
from orchestrator.parsing import parse_text
from orchestrator.workflow import JOB_FIELDS, WORKFLOW_FIELDS

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["", "\x00", "\ud800", "a\nb", "${X}", "{{ x }}", "true", "-1", "1e999", "abc\n"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
JOB_IDS = st.one_of(
    st.sampled_from(["a", "b", "c", "a.b-c_1", "..", "abc\n", "", "x" * 201]), st.text(max_size=10)
)


@st.composite
def jobs(draw):
    job: dict = {}
    for key in draw(st.lists(st.sampled_from(JOB_FIELDS), max_size=len(JOB_FIELDS), unique=True)):
        if key == "id":
            job[key] = draw(JOB_IDS)
        elif key == "command":
            job[key] = draw(st.one_of(st.just("true"), st.lists(st.text(max_size=10), max_size=3), VALUES))
        elif key == "dependencies":
            job[key] = draw(st.one_of(st.lists(JOB_IDS, max_size=3), VALUES))
        elif key == "env":
            job[key] = draw(
                st.one_of(
                    st.dictionaries(st.text(max_size=8), st.one_of(st.text(max_size=8), VALUES), max_size=3),
                    st.just({"S": {"from_env": "HOME"}}),
                    VALUES,
                )
            )
        else:
            job[key] = draw(VALUES)
    if draw(st.booleans()):
        job[draw(st.text(max_size=8))] = draw(VALUES)
    return job


@st.composite
def workflows(draw):
    data: dict = {}
    for key in draw(st.lists(st.sampled_from(WORKFLOW_FIELDS), max_size=len(WORKFLOW_FIELDS), unique=True)):
        data[key] = draw(st.lists(jobs(), max_size=4)) if key == "jobs" else draw(VALUES)
    if draw(st.booleans()):
        data["application_name"] = draw(st.sampled_from(["app", "", "x" * 300]))
        data["jobs"] = draw(st.lists(jobs(), min_size=1, max_size=4))
    return draw(st.one_of(st.just(data), VALUES, near_valid()))


@st.composite
def near_valid(draw):
    """A valid workflow with at most one field of one job drawn from the hostile values."""
    ids = draw(st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=4, unique=True))
    jobs_ = [{"id": j, "command": "true", "dependencies": ids[:i][-1:]} for i, j in enumerate(ids)]
    if draw(st.booleans()):
        job = draw(st.sampled_from(jobs_))
        job[draw(st.sampled_from(JOB_FIELDS[1:]))] = draw(VALUES)
    return {"application_name": "app", "jobs": jobs_}


def _write(path, data, as_yaml: bool) -> bool:
    if as_yaml:
        try:
            path.write_text(yaml.safe_dump(data, allow_unicode=False), encoding="utf-8")
        except (yaml.YAMLError, UnicodeEncodeError, ValueError):
            return False
    else:
        path.write_text(json.dumps(data), encoding="utf-8")
    return True


def _clean(result) -> str:
    said = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "internal error" not in said and "Traceback" not in said, said
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return said


@pytest.fixture
def runner(tmp_path, clean_env, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("EXECUTIONER_HOME", str(home))
    return CliRunner(), home


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=workflows(), as_yaml=st.booleans(), dry=st.integers(0, 4))
def test_generated_workflow_files_never_cause_an_internal_error(runner, tmp_path, data, as_yaml, dry):
    invoke, home = runner
    path = tmp_path / ("wf.yaml" if as_yaml else "wf.json")
    if not _write(path, data, as_yaml):
        return
    checked = invoke.invoke(cli, ["validate", str(path)])
    _clean(checked)
    assert checked.exit_code in (0, 2), checked.output
    if dry == 0:  # the same loader as validate: one case in five is enough
        planned = invoke.invoke(cli, ["run", "--dry-run", str(path)])
        _clean(planned)
        assert planned.exit_code == checked.exit_code
    if checked.exit_code == 2:  # refused: a real run must refuse too, and write nothing
        ran = invoke.invoke(cli, ["run", str(path)])
        _clean(ran)
        assert ran.exit_code == 2
        assert not (home / "executioner.db").exists()


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=st.text(max_size=200))
def test_any_text_parses_or_is_refused_as_a_workflow_problem(text):
    for name in ("wf.yaml", "wf.json"):
        with contextlib.suppress(WorkflowError):
            parse_text(text, name)


ARG = st.one_of(
    st.text(max_size=12),
    st.integers(min_value=-(10**25), max_value=10**25).map(str),
    st.sampled_from(["-1", "0", "1", "1e20", "9223372036854775808", "", "\x00", "--json", "--force"]),
)
COMMANDS = st.sampled_from(
    [
        ["status"],
        ["history"],
        ["logs"],
        ["resume"],
        ["mark-success"],
        ["rollback"],
        ["runs", "--limit"],
        ["resume", "1", "--from-job"],
        ["logs", "1", "a", "--attempt"],
        ["run", "--max-parallel"],
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(command=COMMANDS, args=st.lists(ARG, max_size=3))
def test_generated_arguments_never_cause_an_internal_error(runner, command, args):
    invoke, _home = runner
    if any("\x00" in a for a in args):
        return  # an OS argv cannot carry NUL: nothing a user can type
    result = invoke.invoke(cli, [*command, *args])
    _clean(result)
    assert result.exit_code in (0, 2), (command, args, result.output)
    runs = invoke.invoke(cli, ["runs", "--json"])
    assert runs.exit_code == 0 and json.loads(runs.output) == {"runs": []}  # nothing was written


def test_the_generators_reach_valid_and_invalid_files(tmp_path):
    """A fuzz test that never produces a valid file would test only refusals."""
    from hypothesis import find

    assert isinstance(find(workflows(), lambda d: isinstance(d, dict) and _loads(d)), dict)
    assert find(workflows(), lambda d: not _loads(d)) is not None


def _loads(data) -> bool:
    from orchestrator.loader import workflow_from_data

    try:
        workflow_from_data(data)
    except WorkflowError:
        return False
    return True
