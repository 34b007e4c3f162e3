"""Live progress of an attempt: rich on a terminal, one plain line per job event otherwise."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import TextIO

from rich.markup import escape

from workers.statuses import JobStatus

_DONE = {s for s in JobStatus if s.is_terminal and s is not JobStatus.SKIPPED}  # ends a job's line


class PlainReporter:
    """``HH:MM:SS job STATUS (try n) detail`` lines: greppable, and fine in CI logs and pipes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def attempt_started(self, run_id: int, attempt_id: int, will_run: int, total: int) -> None:
        self._line(f"run {run_id} attempt {attempt_id}: {will_run} of {total} jobs to run")

    def job_changed(
        self, job_id: str, status: JobStatus, *, try_number: int | None = None, detail: str = ""
    ) -> None:
        if status is JobStatus.QUEUED:
            return  # RUNNING follows at once; one line per real change keeps logs readable
        parts = [job_id, str(status)]
        if try_number is not None and try_number > 1:
            parts.append(f"(try {try_number})")
        if detail:
            parts.append(detail)
        self._line(" ".join(parts))

    def try_failed(self, job_id: str, try_number: int, status: JobStatus, detail: str) -> None:
        self._line(f"{job_id} try {try_number} {status} {detail}".rstrip())

    def attempt_ended(self, status: str) -> None:
        pass

    def _line(self, text: str) -> None:
        print(f"{datetime.now():%H:%M:%S} {text}", file=self.stream, flush=True)


class RichReporter:
    """A progress bar with done/total, the jobs running now, and failures as they happen."""

    REFRESH_SECONDS = 0.1

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(stderr=False)
        self.live = Live(console=self.console, auto_refresh=False, transient=True)
        self.total = 0
        self.done = 0
        self.running: dict[str, int] = {}
        self.started = time.monotonic()
        self.last_refresh = 0.0
        self.header = ""

    def attempt_started(self, run_id: int, attempt_id: int, will_run: int, total: int) -> None:
        self.total = will_run
        self.header = f"run {run_id} attempt {attempt_id}"
        self.console.print(f"[bold]{self.header}[/]: {will_run} of {total} jobs to run")
        self.live.start()
        self._refresh(force=True)

    def job_changed(
        self, job_id: str, status: JobStatus, *, try_number: int | None = None, detail: str = ""
    ) -> None:
        if status is JobStatus.RUNNING:
            self.running[job_id] = try_number or 1
        elif status in _DONE:
            self.running.pop(job_id, None)
            if status is not JobStatus.SUCCESS:
                colour = "yellow" if status is JobStatus.UPSTREAM_FAILED else "red"
                self.live.console.print(f"[{colour}]{status}[/] {escape(job_id)} {escape(detail)}".rstrip())
            self.done += 1
        self._refresh()

    def try_failed(self, job_id: str, try_number: int, status: JobStatus, detail: str) -> None:
        self.live.console.print(f"[dim]{escape(job_id)} try {try_number} {status} {escape(detail)}[/]")

    def attempt_ended(self, status: str) -> None:
        self._refresh(force=True)
        self.live.stop()

    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_refresh < self.REFRESH_SECONDS:
            return
        self.last_refresh = now
        self.live.update(self._render(now), refresh=True)

    def _render(self, now: float):
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        table = Table.grid(padding=(0, 1))
        table.add_row(
            ProgressBar(total=max(self.total, 1), completed=self.done, width=40),
            f"{self.done}/{self.total} done",
            f"{now - self.started:.1f}s",
        )
        names = list(self.running)
        if names:
            shown = ", ".join(
                f"{n} (try {t})" if t > 1 else n for n, t in ((n, self.running[n]) for n in names[:6])
            )
            more = f" +{len(names) - 6} more" if len(names) > 6 else ""
            table.add_row("[cyan]running[/]", escape(shown + more), "")
        return table
