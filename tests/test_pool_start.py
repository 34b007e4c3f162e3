"""The local job pool started ahead (``workers.pool_start``): the run it is opened for runs in it; a
pool never opened stops having written nothing; one that died meanwhile is replaced."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from orchestrator.context import Context
from orchestrator.launch import RunRequest, start_run
from orchestrator.settings import Settings
from workers.pool import _open_message
from workers.pool_start import start_pool
from workers.wire import WireError


def _flow(tmp_path: Path, parent_file: Path) -> Path:
    """One job that writes down its parent process: the pool that ran it."""
    path = tmp_path / "flow.json"
    job = {"id": "a", "command": f"echo $PPID > {parent_file}"}
    path.write_text(json.dumps({"application_name": "ahead", "jobs": [job]}))
    return path


def _run(tmp_path: Path, pool) -> int:
    """Runs the flow with ``pool`` started ahead; the pid of the process that ran its job."""
    parent = tmp_path / "parent"
    with Context(Settings.from_env({}, home=tmp_path / "home"), pool) as ctx:
        outcome = start_run(ctx, RunRequest(str(_flow(tmp_path, parent)), executor="local"))
        assert str(outcome.status) == "SUCCESS"
        assert ctx.take_started_pool() is None  # the run took it (or replaced it)
    return int(parent.read_text())


def test_the_run_goes_to_the_pool_started_ahead(tmp_path):
    pool = start_pool(str(tmp_path / "home"))
    assert _run(tmp_path, pool) == pool.pid
    assert pool.wait(10) == 0  # closed with the attempt, as a pool started at the attempt's open


def test_a_pool_started_ahead_that_died_is_replaced_by_one_started_then(tmp_path):
    pool = start_pool(str(tmp_path / "home"))
    pool.kill()
    pool.wait()
    assert _run(tmp_path, pool) not in (pool.pid, os.getpid())


def test_a_pool_never_opened_stops_and_writes_nothing(tmp_path):
    home = tmp_path / "home"
    pool = start_pool(str(home))
    ctx = Context(Settings.from_env({}, home=home), pool)
    ctx.close()  # a refused or dry run: nothing took it
    assert pool.returncode == 0
    assert not (home / "journal").exists()


def test_the_pools_first_message_must_open_it(tmp_path):
    def first(*lines: bytes):
        path = tmp_path / "in"
        path.write_bytes(b"".join(lines))
        with path.open("rb") as source:
            return _open_message(source)

    assert first() is None  # its input ended: never needed
    args = ["/j", 1, 2, 3, 4, "", "/h"]
    assert first(json.dumps({"v": 1, "op": "open", "args": args, "new": "ignored"}).encode() + b"\n") == [
        "/j",
        "1",
        "2",
        "3",
        "4",
        "",
        "/h",
    ]
    for bad in (
        b'{"v": 1, "op": "run", "task": {}}\n',
        b'{"v": 1, "op": "open", "args": ["/j", 1]}\n',
        b'{"v": 1, "op": "open", "args": ["/j", 1, 2, 3, {"x": 1}]}\n',
        b"[1, 2]\n",
        b"\x00garbage\n",
    ):
        with pytest.raises(WireError):
            first(bad)


def test_a_local_run_from_the_cli_starts_its_pool_first_and_nothing_else_does(home, tmp_path, monkeypatch):
    from click.testing import CliRunner

    import workers.pool_start
    from orchestrator.cli.main import cli

    started = []  # pools the command started ahead
    real = workers.pool_start.start_pool
    monkeypatch.setattr(workers.pool_start, "start_pool", lambda h: started.append(real(h)) or started[-1])
    parent = tmp_path / "parent"
    flow = str(_flow(tmp_path, parent))
    runner = CliRunner()
    for args, code, ahead in (
        (["run", flow, "--dry-run"], 0, 0),
        (["run", flow, "--executor", "celery"], 2, 0),  # no broker: refused, and no pool of ours
        (["run", flow], 0, 1),
        (["resume", "1", "--dry-run"], 0, 0),
        (["resume", "1"], 0, 1),  # nothing to do: the pool started ahead is stopped
    ):
        started.clear()
        result = runner.invoke(cli, args)
        assert result.exit_code == code, (args, result.output)
        assert len(started) == ahead, args
        assert all(pool.poll() is not None for pool in started), args  # none left behind
        if args == ["run", flow]:
            assert int(parent.read_text()) == started[0].pid  # the job ran in it
