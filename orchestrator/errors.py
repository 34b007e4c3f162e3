"""Errors a user can cause. The CLI prints them as one clear line each and exits with ``exit_code``."""

from __future__ import annotations

from datetime import datetime


class UserError(Exception):
    """Bad input or a refusal: exit 2, nothing written."""

    exit_code = 2

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def lines(self) -> list[str]:
        return [self.message, *self.details]


class WorkflowError(UserError):
    """One or more problems in a workflow file, each naming the file, the job and the field."""

    def __init__(self, problems: list[WorkflowProblem]) -> None:
        self.problems = problems
        super().__init__(str(problems[0]), [str(p) for p in problems[1:]])


class WorkflowProblem:
    __slots__ = ("field", "file", "job", "message")

    def __init__(self, file: str, message: str, job: str | None = None, field: str | None = None):
        self.file, self.message, self.job, self.field = file, message, job, field

    def __str__(self) -> str:
        where = [self.file]
        if self.job is not None:
            where.append(f"job {self.job!r}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        return ": ".join([*where, self.message])

    def as_dict(self) -> dict:
        return {"file": self.file, "job": self.job, "field": self.field, "message": self.message}


class UnknownRunError(UserError):
    def __init__(self, run_id: int) -> None:
        super().__init__(f"run {run_id} does not exist")


class UnknownJobError(UserError):
    def __init__(self, run_id: int | None, job_ids: list[str]) -> None:
        where = f"run {run_id}" if run_id is not None else "the workflow"
        names = ", ".join(repr(j) for j in job_ids)
        super().__init__(f"unknown job id(s) in {where}: {names}")


class RefusedError(UserError):
    """A restart rule refused the command; ``details`` lists every reason, one per line."""


class LockedError(Exception):
    """The run is held by another live coordinator: exit 3."""

    exit_code = 3

    def __init__(self, run_id: int, host: str, pid: int, since: datetime, what: str = "") -> None:
        self.run_id, self.host, self.pid, self.since = run_id, host, pid, since
        doing = f" ({what})" if what else ""
        super().__init__(
            f"run {run_id} is locked by {host} pid {pid}{doing} since {since.isoformat(timespec='seconds')}"
        )

    def lines(self) -> list[str]:
        return [str(self)]


class FencedError(RuntimeError):
    """A newer holder took the run's lock: this coordinator must stop writing (fencing token)."""


class ServiceUnavailableError(UserError):
    """A server the command needs (broker, lock servers, database) cannot be reached."""


class ServiceLostError(ServiceUnavailableError):
    """A server was lost once the attempt existed: exit 1 (SPEC: a run that did not finish), with the
    resume hint in the message, rather than 2 (which says "refused, nothing written")."""

    exit_code = 1


class DatabaseFault(RuntimeError):
    """The history could not be written for longer than the coordinator waits: exit 1, resume later."""


def is_database_error(exc: BaseException) -> bool:
    """A driver error wrapped by SQLAlchemy. Checked by name: importing SQLAlchemy here would slow
    every command, ``--help`` included."""
    return any(c.__module__ == "sqlalchemy.exc" and c.__name__ == "DBAPIError" for c in type(exc).__mro__)
