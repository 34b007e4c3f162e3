"""Commands timed as users run them: a fresh interpreter per command, its start included."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXECUTIONER = str(Path(sys.executable).parent / "executioner")


def history_env(home: str | Path, database_url: str | None = None) -> dict[str, str]:
    """The settings that point a command at ``home`` and its history (by default the home's own
    SQLite file): a developer's EXECUTIONER_DATABASE_URL must not send a case elsewhere."""
    return {
        "EXECUTIONER_HOME": str(home),
        "EXECUTIONER_DATABASE_URL": database_url or f"sqlite:///{Path(home) / 'executioner.db'}",
    }


def xargs(commands: str, parallel: int) -> None:
    """What a shell user writes instead: ``xargs -P<parallel>``, each line through ``/bin/sh -c``."""
    subprocess.run(
        ["xargs", f"-P{parallel}", "-I{}", "/bin/sh", "-c", "{}"], input=commands, text=True, check=True
    )


def wall(argv: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env={**os.environ, **(env or {})}, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def cli_run_wall(path: Path, env: dict[str, str] | None = None, *args: str) -> float:
    """``executioner run PATH`` in a fresh home (its database migrated first, outside the clock)."""
    with tempfile.TemporaryDirectory() as home:
        settings = {**(env or {}), **history_env(home)}
        subprocess.run(
            [EXECUTIONER, "db", "upgrade"],
            env={**os.environ, **settings},
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return wall([EXECUTIONER, "run", str(path), *args], settings)
