"""Commands timed as users run them: a fresh interpreter per command, its start included."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXECUTIONER = str(Path(sys.executable).parent / "executioner")


def wall(argv: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env={**os.environ, **(env or {})}, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def cli_run_wall(path: Path, env: dict[str, str] | None = None, *args: str) -> float:
    """``executioner run PATH`` in a fresh home (its database migrated first, outside the clock)."""
    with tempfile.TemporaryDirectory() as home:
        settings = {**(env or {}), "EXECUTIONER_HOME": home}
        subprocess.run(
            [EXECUTIONER, "db", "upgrade"],
            env={**os.environ, **settings},
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return wall([EXECUTIONER, "run", str(path), *args], settings)
