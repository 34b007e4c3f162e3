"""Shared fixtures: an isolated EXECUTIONER_HOME, the installed CLI in a subprocess, workflow files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from orchestrator.settings import ENVIRONMENT_VARIABLES

EXECUTIONER = str(Path(sys.executable).parent / "executioner")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)

    def __str__(self) -> str:  # shown by pytest when an assertion on a Result fails
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


@pytest.fixture
def clean_env(monkeypatch):
    for var in ENVIRONMENT_VARIABLES:  # a developer's own settings must not leak into the tests
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def home(tmp_path, clean_env, monkeypatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("EXECUTIONER_HOME", str(path))
    return path


class Cli:
    """Runs the installed ``executioner`` command like a user would."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd, self.env = cwd, env

    def __call__(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
        proc = subprocess.run(
            [EXECUTIONER, *map(str, args)],
            cwd=self.cwd,
            env={**os.environ, **self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            [EXECUTIONER, *map(str, args)],
            cwd=self.cwd,
            env={**os.environ, **self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@pytest.fixture(scope="session")
def postgres():
    from support import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, home) -> str:
    """The history database of a test: every database-dependent test runs on SQLite and PostgreSQL."""
    if request.param == "postgres":
        return request.getfixturevalue("postgres").new_database()
    return f"sqlite:///{home / 'executioner.db'}"


@pytest.fixture
def cli(tmp_path, home, database_url) -> Cli:
    return Cli(tmp_path, {"EXECUTIONER_HOME": str(home), "EXECUTIONER_DATABASE_URL": database_url})


class Workdir:
    """A scratch folder with a ledger: every job appends its id, so tests see what really ran."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ledger = root / "ledger"

    def job(self, job_id: str, deps=(), command: str | None = None, **fields) -> dict:
        cmd = f"echo {job_id} >> {self.ledger}"
        if command:
            cmd = f"{cmd} && {command}"
        return {"id": job_id, "command": cmd, "dependencies": list(deps), **fields}

    def workflow(self, jobs: list[dict], name: str = "wf.yaml", **top) -> Path:
        path = self.root / name
        data = {"application_name": top.pop("application_name", "test_app"), **top, "jobs": jobs}
        path.write_text(json.dumps(data) if name.endswith(".json") else yaml.safe_dump(data))
        return path

    def ran(self) -> list[str]:
        return self.ledger.read_text().split() if self.ledger.exists() else []

    def clear(self) -> None:
        self.ledger.unlink(missing_ok=True)

    def flag(self, name: str) -> Path:
        return self.root / f"{name}.flag"


@pytest.fixture
def work(tmp_path) -> Workdir:
    return Workdir(tmp_path)


def require_binary(name: str) -> str:
    """Path of a server binary; skip without it on a developer's box, fail in CI (never pass by skip)."""
    import shutil

    path = shutil.which(name)
    if path is None:
        for extra in ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/sbin"):
            candidate = Path(extra) / name
            if candidate.exists():
                path = str(candidate)
                break
    if path is None:
        message = f"{name} is not installed"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{message}, and CI must not pass by skipping", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared_redis(tmp_path_factory):
    from support import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def shared_workers(shared_redis, tmp_path_factory):
    """Two real workers for the whole session: one on the default queue, one on default and `special`."""
    from support import Worker

    logs = tmp_path_factory.mktemp("workers")
    env = {
        "EXECUTIONER_HEARTBEAT_INTERVAL": "1",
        "EXECUTIONER_HEARTBEAT_TTL": "6",
        "EXECUTIONER_HOME": str(logs / "home"),  # the workers' log store: <home>/logs on this machine
    }
    workers = [
        Worker(shared_redis.url, logs, "w1", "--concurrency", "2", env=env),
        Worker(shared_redis.url, logs, "w2", "--concurrency", "2", "-Q", "default,special", env=env),
    ]
    yield workers
    for w in workers:
        w.stop()


@pytest.fixture
def celery_cli(cli, shared_redis, shared_workers) -> Cli:
    """The CLI on the Celery executor (the broker set makes it the default), with real workers."""
    shared_redis.reset()
    cli.env.update(
        {
            "EXECUTIONER_BROKER_URL": shared_redis.url,
            "EXECUTIONER_HEARTBEAT_INTERVAL": "1",
            "EXECUTIONER_HEARTBEAT_TTL": "6",
        }
    )
    return cli


@pytest.fixture(params=["local", "celery"])
def ex(request, cli) -> Cli:
    """The CLI bound to one executor: the restart suite runs once per executor."""
    if request.param == "celery":
        return request.getfixturevalue("celery_cli")
    return cli
