"""Templates: the names and helpers users get, and a sandbox that hostile templates cannot escape."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from orchestrator.errors import WorkflowError
from orchestrator.loader import workflow_from_data
from orchestrator.run_inputs import new_run_inputs, runnable
from orchestrator.templating import Renderer, template_context, time_limit


def render(text: str, **params) -> str:
    ctx = template_context(
        run_id=7,
        params=params,
        logical_date=datetime(2026, 11, 27, 1, tzinfo=UTC),
        data_interval_start=datetime(2026, 11, 27, 1, tzinfo=UTC),
        data_interval_end=datetime(2026, 11, 28, 1, tzinfo=UTC),
    )
    r = Renderer(ctx, "wf.yaml")
    with time_limit(2):
        out = r.text(text, "j", "command")
    r.check()
    return out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("load {{ ds }}", "load 2026-11-27"),
        ("{{ ds_nodash }}", "20261127"),
        ("{{ ts_nodash }}", "20261127T010000"),
        ("{{ logical_date }}", "2026-11-27T01:00:00+00:00"),
        ("{{ data_interval_end }}", "2026-11-28T01:00:00+00:00"),
        ("{{ ds_add(ds, -1) }}", "2026-11-26"),
        ("{{ (logical_date - days(1)) | ds }}", "2026-11-26"),
        ("{{ (logical_date + hours(6)) | ts }}", "2026-11-27T07:00:00+00:00"),
        ("{{ logical_date.strftime('%Y/%m') }}", "2026/11"),
        ("run {{ run_id }}", "run 7"),
        ("no template at all: awk '{print $1}'", "no template at all: awk '{print $1}'"),
        ("{% raw %}docker ps --format '{{.Names}}'{% endraw %}", "docker ps --format '{{.Names}}'"),
    ],
)
def test_names_and_helpers(text, expected):
    assert render(text) == expected


def test_params_render_and_an_unset_optional_one_is_empty():
    assert render("{{ params.n * 2 }}-{{ params.none }}", n=21, none=None) == "42-"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{ nope }}", "'nope' is undefined"),
        ("{{ params.missing }}", "has no attribute 'missing'"),
        ("{{ ''.__class__ }}", "not allowed in the sandbox"),
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "not allowed in the sandbox"),
        ("{{ days.__globals__ }}", "not allowed in the sandbox"),
        ("{{ self.__init__.__globals__ }}", "not allowed in the sandbox"),
        ("{{ cycler.__init__.__globals__.os }}", "not allowed in the sandbox"),
        ("{{ lipsum(5) }}", "'lipsum' is undefined"),
        ("{{ 'x' * 10**10 }}", "repetition result too large"),
        ("{{ 'x' | center(10**10) }}", "larger than 100,000"),
        ("{{ '%999999999d' % 1 }}", "format width too large"),
        ("{{ '{:>999999999}'.format(1) }}", "format width too large"),
        ("{{ 9 ** 99999 }}", "larger than 10,000"),
        ("{{ 9 ** 9999 ** 9 }}", "too large"),
        ("{% for i in range(100000) %}{% for j in range(99) %}xx{% endfor %}{% endfor %}", "longer than"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ("{{ oops", "unexpected end of template"),
    ],
)
def test_hostile_or_broken_templates_are_refused_quickly(text, message):
    began = time.monotonic()
    with pytest.raises(WorkflowError) as exc:
        render(text)
    assert message in str(exc.value), str(exc.value)
    assert "job 'j': field 'command': template error" in str(exc.value)
    assert time.monotonic() - began < 5


def test_a_template_that_loops_without_output_is_stopped_by_the_time_limit():
    began = time.monotonic()
    with pytest.raises(WorkflowError, match="longer than 2 s"):
        render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
    assert time.monotonic() - began < 10


def workflow(jobs, **top):
    return workflow_from_data({"application_name": "t", **top, "jobs": jobs}, "wf.yaml")


def test_every_templated_field_is_rendered_and_problems_are_listed_together():
    wf = workflow(
        [
            {
                "id": "a",
                "command": ["echo", "{{ ds }}", "{{ params.region }}"],
                "env": {"DAY": "{{ ds_nodash }}", "SECRET": {"from_env": "S"}},
                "working_dir": "/tmp/{{ params.region }}",
            },
            {"id": "b", "command": "echo {{ nope }}"},
            {"id": "c", "command": "echo {{ also_nope }}"},
        ],
        params={"region": {"default": "eu"}},
    )
    inputs = new_run_inputs(wf, logical_date="2026-11-27", environ={})
    with pytest.raises(WorkflowError) as exc:
        runnable(wf, inputs, 1)
    assert [p.job for p in exc.value.problems] == ["b", "c"]
    ok = workflow([wf.snapshot()["jobs"][0]], params={"region": {"default": "eu"}})
    job = runnable(ok, inputs, 1).jobs["a"]
    assert job.command == ("echo", "2026-11-27", "eu")
    assert job.env == {"DAY": "20261127", "SECRET": {"from_env": "S"}}
    assert job.working_dir == "/tmp/eu"
    plain = workflow([{"id": "x", "command": "true"}])
    assert runnable(plain, new_run_inputs(plain, environ={}), 1) is plain  # nothing to render: no copy


def test_a_template_rendering_to_nothing_is_refused():
    wf = workflow([{"id": "a", "command": "{{ '' }}"}])
    with pytest.raises(WorkflowError, match="rendered command is empty"):
        runnable(wf, new_run_inputs(wf, environ={}), 1)
