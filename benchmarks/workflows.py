"""Workflows the cases run, written as JSON files in a scratch directory."""

from __future__ import annotations

import json
import random
from pathlib import Path


def write(path: Path, jobs: list[dict], name: str = "bench") -> Path:
    path.write_text(json.dumps({"application_name": name, "jobs": jobs}))
    return path


def wide(n: int, command: str = "true", queue: str | None = None) -> list[dict]:
    extra = {"queue": queue} if queue else {}
    return [{"id": f"j{i}", "command": command, **extra} for i in range(n)]


def chain(n: int, command: str = "true") -> list[dict]:
    return [{"id": f"j{i}", "command": command, "dependencies": [f"j{i - 1}"] if i else []} for i in range(n)]


def random_dag(n: int, seed: int = 7, max_parents: int = 3, window: int = 200) -> list[dict]:
    """A random DAG: each job depends on up to ``max_parents`` of the ``window`` jobs before it."""
    rng = random.Random(seed)
    jobs = []
    for i in range(n):
        lo = max(0, i - window)
        parents = (
            sorted({f"j{rng.randrange(lo, i)}" for _ in range(rng.randint(0, max_parents))}) if i else []
        )
        jobs.append(
            {
                "id": f"j{i}",
                "command": "true",
                "dependencies": parents,
                "max_retries": rng.choice([0, 0, 1, 2]),
                "timeout": 600,
            }
        )
    return jobs
