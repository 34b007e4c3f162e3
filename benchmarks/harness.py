"""Timing, results and reporting shared by every case."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.context import Context
from orchestrator.db.engine import ensure_schema
from orchestrator.launch import RunRequest, start_run
from orchestrator.settings import Settings


@dataclass
class CaseResult:
    name: str
    metric: str  # what the numbers are, e.g. "jobs/s" or "ms per hop"
    ours: list[float]
    baseline: list[float]
    baseline_name: str
    target: str  # e.g. "ratio >= 0.9"
    check: Callable[[float, float], bool] = field(repr=False, default=lambda ours, base: True)
    note: str = ""

    @property
    def ours_median(self) -> float:
        return statistics.median(self.ours)

    @property
    def baseline_median(self) -> float:
        return statistics.median(self.baseline) if self.baseline else float("nan")

    @property
    def ratio(self) -> float:
        return self.ours_median / self.baseline_median if self.baseline else float("nan")

    @property
    def ok(self) -> bool:
        return self.check(self.ours_median, self.baseline_median)

    def line(self) -> str:
        def spread(values: list[float]) -> str:
            return f"{statistics.median(values):.4g} ({min(values):.4g}-{max(values):.4g})" if values else "-"

        verdict = "meets" if self.ok else "MISSES"
        base = f" vs {self.baseline_name} {spread(self.baseline)}" if self.baseline else ""
        ratio = f" ratio {self.ratio:.3f}" if self.baseline else ""
        return (
            f"{self.name:<14} {self.metric}: ours {spread(self.ours)}{base}{ratio} "
            f"-> {verdict} target ({self.target}){'; ' + self.note if self.note else ''}"
        )

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("check")
        d.update(
            ours_median=self.ours_median, baseline_median=self.baseline_median, ratio=self.ratio, ok=self.ok
        )
        return d


@contextlib.contextmanager
def fresh_context(**settings: object) -> Iterator[Context]:
    """A new home and database, migrated before any clock starts (a user's home is migrated once)."""
    with tempfile.TemporaryDirectory() as home, Context(Settings.from_env({}, home=home, **settings)) as ctx:
        ensure_schema(ctx.engine)
        yield ctx


def run_timed(ctx: Context, request: RunRequest) -> float:
    """One run through the public API the CLI calls, history writes included."""
    start = time.perf_counter()
    outcome = start_run(ctx, request)
    elapsed = time.perf_counter() - start
    if str(outcome.status) != "SUCCESS":
        raise RuntimeError(f"benchmark run ended {outcome.status}")
    return elapsed


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def machine() -> dict:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": os.getloadavg(),
    }


def write_results(results: list[CaseResult], path: Path, smoke: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {"machine": machine(), "smoke": smoke, "cases": [r.as_dict() for r in results]},
            indent=2,
            default=str,
        )
    )
