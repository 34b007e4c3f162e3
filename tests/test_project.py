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


def test_commands_import_only_what_they_use():
    """Start-up is most of a short command's wall time: `runs` needs SQL, not the planner, the graph
    library, the coordinator or the web stack; `--help` not even SQLAlchemy (issue 13)."""
    import subprocess
    import sys

    probe = (
        "import sys, runpy; sys.argv = ['executioner', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('orchestrator.cli', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('networkx', 'sqlalchemy', 'starlette', 'celery', 'jinja2', 'yaml') or m.startswith('orchestrator.'))))"
    )

    def loaded(*args: str, home: Path) -> set[str]:
        out = subprocess.run(
            [sys.executable, "-c", probe, *args],
            env={"EXECUTIONER_HOME": str(home), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return set(out.split()[-1000:])

    import tempfile

    with tempfile.TemporaryDirectory() as home:
        runs = loaded("runs", "--json", home=Path(home))
        assert "sqlalchemy" in runs
        for heavy in (
            "networkx",
            "orchestrator.planner",
            "orchestrator.coordinator",
            "orchestrator.launch",
            "celery",
            "starlette",
            "jinja2",
        ):
            assert heavy not in runs, heavy
        helped = loaded("--help", home=Path(home))
        assert "sqlalchemy" not in helped and "networkx" not in helped
        # `status` plans what a resume would do, on the graph's plain dicts: no networkx either.
        flow = Path(home) / "wf.yaml"
        flow.write_text(
            "application_name: t\njobs:\n  - {id: a, command: 'true'}\n  - {id: b, command: 'exit 3', dependencies: [a]}\n"
        )
        subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "run", str(flow)],
            env={"EXECUTIONER_HOME": home, "PATH": "/usr/bin:/bin"},
            capture_output=True,
        )
        status = loaded("status", "1", "--json", home=Path(home))
        assert "orchestrator.planner" in status
        for heavy in ("networkx", "orchestrator.coordinator", "celery", "starlette", "jinja2"):
            assert heavy not in status, heavy


def test_every_command_and_the_local_pool_run_with_the_collector_tuned_for_large_runs():
    """100,000 long-lived rows and jobs: with Python's default thresholds the collector re-walks them
    all the time (a third of ``status``); tuned once at start, after the imports (frozen)."""
    import subprocess
    import sys

    probe = (
        "import gc, sys; import click; from orchestrator.cli import main as m; "
        "m.cli = lambda **kw: print(gc.get_threshold(), gc.get_freeze_count() > 0); m.main()"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    from workers.collector import THRESHOLDS

    assert out.strip() == f"{THRESHOLDS} True"
    assert "tune_collector()" in Path(__file__).parents[1].joinpath("workers/pool.py").read_text()


def test_commands_that_only_read_run_without_a_cyclic_collection_and_give_the_collector_back(
    home, tmp_path, monkeypatch
):
    """Everything `status` builds survives until it is printed, so each young collection re-walks
    it all (0.35 s of `status` on 100,000 jobs): a reading command pauses the collector from the
    moment its context opens until it closed, and gives it back as it was (a CLI runner in a
    long-lived process keeps it). Every command settles the heap (freezes it) once its context is
    built and as it ends: the collection at interpreter exit walked it all (0.12 s of a 1-job run)."""
    import gc
    import json

    from click.testing import CliRunner

    from orchestrator.cli.main import cli
    from orchestrator.context import Context
    from workers import collector

    flow = tmp_path / "flow.json"
    flow.write_text(json.dumps({"application_name": "gc", "jobs": [{"id": "a", "command": "true"}]}))
    events: list[str] = []  # "open", "settle", a collection's generation, "close"
    opened, closed = Context.__init__, Context.close

    def open_(self, *args, **kwargs):
        events.append("open")
        opened(self, *args, **kwargs)

    def close(self):
        closed(self)
        events.append("close")

    monkeypatch.setattr(Context, "__init__", open_)
    monkeypatch.setattr(Context, "close", close)
    real_settle = collector.settle
    monkeypatch.setattr(collector, "settle", lambda: events.append("settle") or real_settle())

    def count(phase: str, info: dict) -> None:
        if phase == "start":
            events.append(str(info["generation"]))

    runner = CliRunner()
    previous = gc.get_threshold()
    gc.set_threshold(1)  # a collection on nearly every allocation: any left running is seen
    gc.callbacks.append(count)
    inside: dict[str, int] = {}
    try:
        for args in (
            ["run", str(flow)],
            ["status", "1"],
            ["status", "1", "--json"],
            ["history", "1", "--json"],
            ["runs"],
            ["audit", "1"],
            ["resume", "1", "--dry-run"],
            ["run", str(flow), "--dry-run"],
        ):
            events.clear()
            result = runner.invoke(cli, args)
            assert result.exit_code == 0, (args, result.output)
            assert gc.isenabled(), args
            # Settled once the context is built and again after it closed, as the command ends.
            assert events[events.index("open") + 1] == "settle", (args, events[:3])
            assert events[events.index("close") + 1] == "settle", args
            window = events[events.index("open") + 2 : events.index("close")]
            name = "run" if args[0] == "run" and "--dry-run" not in args else " ".join(args[:1] + args[2:])
            inside[name] = len(window)
    finally:
        gc.callbacks.remove(count)
        gc.set_threshold(*previous)
    assert inside.pop("run") > 0  # a coordinator (it may live for days) keeps its collector
    assert inside == dict.fromkeys(inside, 0), inside


def test_a_settled_heap_is_not_walked_again_and_what_comes_after_is_still_collected():
    """``settle`` freezes what is alive: the first young collection after a read's pause does not
    walk it (a dry run's plan), nor does the one at interpreter exit; reference counting still frees
    it, and what is built later is collected as before (cycles included)."""
    import gc
    import weakref

    import pytest

    from workers.collector import paused, settle

    class Node:
        pass

    walks: list[int] = []

    def walked(phase: str, info: dict) -> None:
        if phase == "start":
            walks.append(info["generation"])

    def cycle() -> weakref.ref:
        node = Node()
        node.me = node  # only the cyclic collector can free it
        return weakref.ref(node)

    frozen = gc.get_freeze_count()
    try:
        with paused():
            assert not gc.isenabled()
            kept = [[i] for i in range(50_000)]  # containers the collector tracks
            plain = Node()
            freed = weakref.ref(plain)
            settle()
            gc.callbacks.append(walked)
        assert gc.isenabled()
        [[i] for i in range(gc.get_threshold()[0] // 2)]  # fewer than a young collection waits for
        assert walks == [], walks  # no young walk over the 50,000 survivors
        assert gc.get_freeze_count() >= frozen + 50_000
        del plain
        assert freed() is None and len(kept) == 50_000  # reference counting as ever
        later = cycle()
        gc.collect()
        assert later() is None
    finally:
        if walked in gc.callbacks:
            gc.callbacks.remove(walked)
        gc.unfreeze()  # nothing left pinned for the tests after this one
    with pytest.raises(RuntimeError), paused():
        raise RuntimeError("a command that fails")
    assert gc.isenabled()
