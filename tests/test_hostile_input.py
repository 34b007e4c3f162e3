"""Hostile workflow files and arguments: refused in well under a second, one line, exit 2, nothing written.

Each case here broke an earlier version at run time (an overflow in poll(), a 4 GB alias bomb, a NUL
that made the worker's task raise, ...). ``validate`` and ``run`` must refuse them up front.
"""

from __future__ import annotations

import json
import time

import pytest

from orchestrator.errors import WorkflowError
from orchestrator.loader import load_workflow
from orchestrator.parsing import parse_text, summary
from workers.retry import MAX_SECONDS, RetryPolicy


def _bomb(levels: int = 10, width: int = 9) -> str:
    lines = [f"l0: &l0 [{', '.join(['x'] * width)}]"]
    for n in range(1, levels):
        lines.append(f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * width)}]")
    lines.append("application_name: bomb")
    lines.append(f"jobs: [{{id: a, command: 'true', env: {{X: *l{levels - 1}}}}}]")
    return "\n".join(lines) + "\n"


HOSTILE = {
    # name: (file name, text, what the message says)
    "alias bomb": ("bomb.yaml", _bomb(), "expands to more than"),
    "recursive alias": ("rec.yaml", "a: &a [*a]\napplication_name: x\njobs: []\n", "recursive YAML alias"),
    "deep JSON": ("deep.json", "[" * 100_000 + "]" * 100_000, "nested deeper than"),
    "deep YAML": ("deep.yaml", "a: " + "[" * 100_000 + "]" * 100_000, "nested deeper than"),
    "4301 digits": (
        "digits.json",
        '{"application_name": "x", "jobs": [{"id": "a", "command": "t", "timeout": ' + "9" * 4301 + "}]}",
        "number too long",
    ),
    "30-day timeout x1000": (
        "t.yaml",
        "application_name: x\njobs: [{id: a, command: t, timeout: 2592000000}]\n",
        "field 'timeout': must be at most 31,622,400",
    ),
    "1e300 timeout": (
        "t.yaml",
        "application_name: x\njobs: [{id: a, command: t, timeout: 1.0e+300}]\n",
        "field 'timeout': must be at most",
    ),
    "1e23 retries": (
        "t.yaml",
        "application_name: x\njobs: [{id: a, command: t, max_retries: 100000000000000000000000}]\n",
        "field 'max_retries': must be at most 1,000",
    ),
    "1e12 retry delay": (
        "t.yaml",
        "application_name: x\njobs: [{id: a, command: t, retry_delay: 1.0e+12}]\n",
        "field 'retry_delay': must be at most",
    ),
    "NUL in command": (
        "n.json",
        '{"application_name": "x", "jobs": [{"id": "a", "command": "echo a\\u0000b"}]}',
        "field 'command': value contains a NUL byte",
    ),
    "NUL in args": (
        "n.json",
        '{"application_name": "x", "jobs": [{"id": "a", "command": ["echo", "a\\u0000"]}]}',
        "field 'command': value contains a NUL byte",
    ),
    "NUL in env": (
        "n.json",
        '{"application_name": "x", "jobs": [{"id": "a", "command": "t", "env": {"A": "\\u0000"}}]}',
        "field 'env': value of A contains a NUL byte",
    ),
    "lone surrogate": (
        "s.json",
        '{"application_name": "x", "jobs": [{"id": "a", "command": "echo \\ud800"}]}',
        "lone surrogate",
    ),
    "id with newline": (
        "id.json",
        '{"application_name": "x", "jobs": [{"id": "abc\\n", "command": "t"}]}',
        "field 'id': must match",
    ),
    "duplicate YAML key": (
        "d.yaml",
        "application_name: x\njobs:\n- id: a\n  command: good\n  command: evil\n",
        "duplicate key 'command'",
    ),
    "duplicate JSON key": (
        "d.json",
        '{"application_name": "x", "jobs": [{"id": "a", "command": "good", "command": "evil"}]}',
        "duplicate key 'command'",
    ),
    "argument too long": (
        "long.json",
        json.dumps({"application_name": "x", "jobs": [{"id": "a", "command": "x" * 200_000}]}),
        "longer than 131071 bytes",
    ),
    "huge max_parallel": (
        "p.yaml",
        "application_name: x\nmax_parallel: 99999999999999999999\njobs: [{id: a, command: t}]\n",
        "field 'max_parallel': must be at most 10,000",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_files_are_refused_fast_by_the_loader(tmp_path, case):
    name, text, expected = HOSTILE[case]
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    started = time.monotonic()
    with pytest.raises(WorkflowError) as info:
        load_workflow(path)
    assert time.monotonic() - started < 5  # generous on a noisy box: the bomb took 50 s and 4 GB before
    assert any(expected in line for line in info.value.lines()), info.value.lines()


@pytest.mark.parametrize("case", ["alias bomb", "NUL in command", "duplicate YAML key", "1e300 timeout"])
def test_hostile_files_through_the_cli_write_nothing(cli, tmp_path, case):
    name, text, expected = HOSTILE[case]
    path = tmp_path / name
    path.write_text(text)
    for command in (("validate",), ("run",), ("run", "--dry-run")):
        r = cli(*command, path)
        assert r.code == 2, (command, r)
        said = r.out + r.err  # a dry run reports on stdout
        assert "Traceback" not in said and "internal error" not in said and expected in said, r
    assert cli("runs", "--json").json() == {"runs": []}


def test_a_bounded_alias_use_still_works():
    text = "d: &d {max_retries: 2}\napplication_name: x\ndefaults: *d\njobs: [{id: a, command: t}]\n"
    data = parse_text(text, "ok.yaml")
    assert data["defaults"] == {"max_retries": 2}
    with pytest.raises(WorkflowError, match="expands"):
        parse_text(_bomb(levels=8, width=8), "b.yaml")  # 8**8 = 16.7 M > MAX_NODES
    # Two levels less (8**6 = 262,144 values, counted twice) pass: the bound is on expansion, not on
    # using aliases.
    assert parse_text(_bomb(levels=6, width=8), "b.yaml")["application_name"] == "bomb"


def test_merge_keys_may_override_but_plain_keys_may_not():
    text = "base: &b {a: 1, b: 2}\nitem:\n  <<: *b\n  b: 3\n"
    assert parse_text(text, "m.yaml")["item"] == {"a": 1, "b": 3}


@pytest.mark.parametrize(
    "value",
    ["x" * 10_000, list(range(10_000)), {str(i): i for i in range(10_000)}, 10**4000, "\ud800", 1e300],
)
def test_summaries_are_short_whatever_the_value(value):
    assert len(summary(value)) <= 64


def test_a_thirty_day_timeout_is_legal_and_delays_stay_finite():
    assert load_workflow  # the loader accepts 30 days (see test_long_timeout_is_supervised in test_runner)
    policy = RetryPolicy(max_retries=1000, retry_delay=1.0, retry_backoff=100.0)
    assert policy.next_delay(999) == MAX_SECONDS  # 100**998 overflows a float: capped, not raised
    assert RetryPolicy(max_retries=1000, retry_delay=0.0, retry_backoff=100.0).next_delay(999) == 0.0


@pytest.mark.parametrize(
    "args, expected",
    [
        (("status", "9223372036854775808"), "RUN_ID"),
        (("history", "99999999999999999999999"), "RUN_ID"),
        (("runs", "--limit", "100000000000000000000"), "--limit"),
        (("logs", "1", "a", "--attempt", "-1"), "--attempt"),
        (("run", "wf.yaml", "--max-parallel", "99999999999999999999"), "--max-parallel"),
        (("--home", "/dev/null", "runs"), "/dev/null"),
        (("--database-url", "foo://bar", "runs"), "foo://bar"),
        (("--database-url", "postgresql://me:s3cret@127.0.0.1:1/x", "runs"), "unreachable"),
    ],
)
def test_bad_arguments_are_one_line_exit_2(cli, work, args, expected):
    work.workflow([work.job("a")])
    r = cli(*args, env={"EXECUTIONER_DATABASE_URL": ""} if "--home" in args else None)
    assert r.code == 2, r
    assert expected in r.err and "Traceback" not in r.err and "internal error" not in r.err, r
    assert "s3cret" not in r.err and "revision" not in r.err  # unreachable, not "run db upgrade"
