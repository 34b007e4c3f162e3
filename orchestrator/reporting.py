"""What the coordinator tells its onlooker (the CLI's live view) as an attempt progresses."""

from __future__ import annotations

from typing import Protocol

from workers.statuses import JobStatus


class Reporter(Protocol):
    def attempt_started(self, run_id: int, attempt_id: int, will_run: int, total: int) -> None: ...

    def job_changed(
        self, job_id: str, status: JobStatus, *, try_number: int | None = None, detail: str = ""
    ) -> None: ...

    def try_failed(self, job_id: str, try_number: int, status: JobStatus, detail: str) -> None: ...

    def attempt_ended(self, status: str) -> None: ...


class NullReporter:
    def attempt_started(self, run_id: int, attempt_id: int, will_run: int, total: int) -> None:
        pass

    def job_changed(
        self, job_id: str, status: JobStatus, *, try_number: int | None = None, detail: str = ""
    ) -> None:
        pass

    def try_failed(self, job_id: str, try_number: int, status: JobStatus, detail: str) -> None:
        pass

    def attempt_ended(self, status: str) -> None:
        pass
