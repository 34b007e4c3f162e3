"""The project's own promises: the README's two commands are what CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", setup)


def test_the_readme_has_exactly_two_setup_commands_and_ci_runs_both_verbatim():
    commands = readme_commands()
    assert len(commands) == 2
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for command in commands:
        assert command in ci, f"CI does not run the README command: {command}"
    assert "examples/etl.yaml" in commands[0] and "pytest" in commands[1]


def test_workers_never_import_the_orchestrator():
    for path in (ROOT / "workers").rglob("*.py"):
        assert not re.search(r"^\s*(from|import)\s+orchestrator", path.read_text(), re.M), path
