"""A resume of the stored workflow warns when the file it came from changed; an attempt keeps the
digest of the file's bytes, so an unchanged file is known without loading it (100,000 jobs: ~5 s)."""

from __future__ import annotations

import hashlib
import json

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

import orchestrator.launch
from orchestrator.cli.main import cli


@pytest.fixture
def invoke(tmp_path, clean_env, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("EXECUTIONER_HOME", str(home))
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(cli, [str(a) for a in args])

    run.digests = lambda: [  # type: ignore[attr-defined]
        r[0]
        for r in create_engine(f"sqlite:///{home / 'executioner.db'}")
        .connect()
        .execute(text("select workflow_sha256 from attempts order by attempt_id"))
    ]
    return run


@pytest.fixture
def loads(monkeypatch):
    """The paths ``resume`` loads and checks whole."""
    seen: list[str] = []
    real = orchestrator.launch.load_workflow

    def counted(path):
        seen.append(str(path))
        return real(path)

    monkeypatch.setattr(orchestrator.launch, "load_workflow", counted)
    return seen


def _write(path, command: str, comment: str = "") -> str:
    path.write_text(f"# {comment}\napplication_name: app\njobs:\n- id: a\n  command: {json.dumps(command)}\n")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_digest_is_recorded_inherited_by_a_stored_resume_and_replaced_by_another_file(invoke, tmp_path):
    wf = tmp_path / "wf.yaml"
    first = _write(wf, "false")
    assert invoke("run", wf).exit_code == 1
    assert invoke("resume", 1).exit_code == 1  # the stored workflow, from the same file
    second = _write(wf, "false", comment="same jobs, other bytes")
    assert invoke("resume", 1, "-c", wf).exit_code == 1
    assert invoke.digests() == [first, first, second]


def test_an_unchanged_file_is_not_loaded_again_and_a_changed_one_is_loaded_and_judged(
    invoke, loads, tmp_path
):
    wf = tmp_path / "wf.yaml"
    _write(wf, "false")
    assert invoke("run", wf).exit_code == 1
    loads.clear()  # the run's own load
    dry = invoke("resume", 1, "--dry-run", "--json")
    assert dry.exit_code == 0 and json.loads(dry.output)["warnings"] == [] and loads == [], dry.output
    _write(wf, "false", comment="only a comment")  # other bytes, the same workflow: no warning
    dry = json.loads(invoke("resume", 1, "--dry-run", "--json").output)
    assert dry["warnings"] == [] and loads == [str(wf)]
    _write(wf, "true")  # another workflow: said
    dry = json.loads(invoke("resume", 1, "--dry-run", "--json").output)
    assert len(dry["warnings"]) == 1 and "changed since attempt 1" in dry["warnings"][0]
    assert loads == [str(wf)] * 2
    wf.unlink()
    dry = json.loads(invoke("resume", 1, "--dry-run", "--json").output)
    assert "no longer exists" in dry["warnings"][0]
