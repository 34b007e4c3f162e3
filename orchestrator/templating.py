"""Jinja2 templates in ``command``, ``env`` values and ``working_dir``, rendered once per run.

A workflow file is input from anyone, and a template is code: rendering uses Jinja2's sandboxed
environment (no attribute starting with ``_``, no unsafe callables) with ``StrictUndefined`` (an
unknown name is an error, never an empty string), and bounds what a template may cost — numbers
given to filters and methods, repetition with ``*``, ``**`` exponents, ``%``/``format`` widths, the
size of each result, and the time the whole workflow may take. Every failure is a ``WorkflowError``
naming the job and field, raised at ``run``/``validate``/``--dry-run``, never at 3 a.m. in a job.

Fields without ``{{``, ``{%`` or ``{#`` are not templates and cost nothing (Jinja2 is not imported).
"""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from functools import cached_property, wraps
from typing import Any

from orchestrator.errors import WorkflowError, WorkflowProblem
from orchestrator.limits import MAX_COMMAND_BYTES

MAX_NUMBER_ARG = 100_000  # the largest number a filter or method may be given (widths, counts)
MAX_EXPONENT = 10_000
MAX_SECONDS = 10.0  # rendering a whole workflow; a template that loops longer is an attack
_WIDE_FORMAT = re.compile(r"\d{6,}")  # a %- or {}-format width/precision of 100,000 or more
_MARKERS = ("{{", "{%", "{#")


def is_template(text: str) -> bool:
    return "{" in text and any(m in text for m in _MARKERS)  # most commands have no brace at all


def ds(value: date | datetime) -> str:
    return value.strftime("%Y-%m-%d")


def ds_nodash(value: date | datetime) -> str:
    return value.strftime("%Y%m%d")


def ts(value: datetime) -> str:
    return value.isoformat()


def ts_nodash(value: datetime) -> str:
    return value.strftime("%Y%m%dT%H%M%S")


def ds_add(value: str, days: int) -> str:
    """``ds_add('2026-11-27', -1)`` → ``'2026-11-26'`` (Airflow's macro of the same name)."""
    return (date.fromisoformat(value) + timedelta(days=int(days))).isoformat()


class IsoDatetime(datetime):
    """A datetime that renders as ISO 8601 (``2026-11-27T02:00:00+01:00``), not ``str()``'s space."""

    def __str__(self) -> str:
        return self.isoformat()


def iso_datetime(value: datetime) -> IsoDatetime:
    return IsoDatetime(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
        value.tzinfo,
        fold=value.fold,
    )


def template_context(
    *,
    run_id: int,
    params: dict[str, Any],
    logical_date: datetime,
    data_interval_start: datetime,
    data_interval_end: datetime,
) -> dict[str, Any]:
    """The names templates see (datetimes already in the schedule's time zone)."""
    return {
        "params": params,
        "run_id": run_id,
        "logical_date": iso_datetime(logical_date),
        "data_interval_start": iso_datetime(data_interval_start),
        "data_interval_end": iso_datetime(data_interval_end),
        "ds": ds(logical_date),
        "ds_nodash": ds_nodash(logical_date),
        "ts": ts(logical_date),
        "ts_nodash": ts_nodash(logical_date),
    }


class Renderer:
    """Renders the template fields of many jobs with one context, collecting every problem."""

    def __init__(self, context: dict[str, Any], source: str) -> None:
        self.context = context
        self.source = source
        self.problems: list[WorkflowProblem] = []

    @cached_property
    def _env(self) -> Any:
        return _environment()

    def text(self, value: str, job: str, field: str) -> str:
        """``value`` rendered (itself if it is no template); a problem recorded on failure."""
        if not is_template(value):
            return value
        try:
            return _render(self._env, value, self.context)
        except _TooSlow as exc:  # the time is the whole workflow's: nothing more is rendered
            self.problems.append(WorkflowProblem(self.source, f"template error: {exc}", job, field))
            raise WorkflowError(self.problems) from None
        except Exception as exc:  # whatever the template raised, it is the workflow's problem
            problem = f"template error: {_describe(exc)}"
            self.problems.append(WorkflowProblem(self.source, problem, job, field))
            return value

    def check(self) -> None:
        if self.problems:
            raise WorkflowError(self.problems)


@contextmanager
def time_limit(seconds: float = MAX_SECONDS) -> Iterator[None]:
    """Abort rendering that runs longer than ``seconds`` (main thread only: the CLI's case)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(_signum, _frame):
        raise _TooSlow(f"rendering took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class _TooSlow(Exception):
    pass


def _render(env: Any, text: str, context: dict[str, Any]) -> str:
    out: list[str] = []
    size = 0
    for chunk in env.from_string(text).generate(context):
        size += len(chunk)
        if size > MAX_COMMAND_BYTES:
            raise _Security(f"the result is longer than {MAX_COMMAND_BYTES + 1} bytes")
        out.append(chunk)
    result = "".join(out)
    if "\x00" in result:
        raise _Security("the result contains a NUL byte")
    return result


def _describe(exc: Exception) -> str:
    from jinja2 import TemplateSyntaxError, UndefinedError
    from jinja2.exceptions import SecurityError

    if isinstance(exc, TemplateSyntaxError):
        return f"{exc.message} (line {exc.lineno})"
    if isinstance(exc, UndefinedError):
        return f"{exc.message} (defined: params, run_id, logical_date, data_interval_start, ..., ds)"
    if isinstance(exc, SecurityError | _Security):
        return f"not allowed in the sandbox: {exc}"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]


class _Security(Exception):
    pass


def _environment() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.exceptions import SecurityError
    from jinja2.sandbox import SandboxedEnvironment, safe_range

    def bounded(args: tuple, kwargs: dict) -> None:
        for value in (*args, *kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_NUMBER_ARG:
                raise SecurityError(f"number {value} is larger than {MAX_NUMBER_ARG:,}")
            if isinstance(value, str) and "%" in value and _WIDE_FORMAT.search(value):
                raise SecurityError("format width too large")

    def guard(func: Callable) -> Callable:
        @wraps(func)
        def checked(*args: Any, **kwargs: Any) -> Any:
            bounded(args, kwargs)
            return func(*args, **kwargs)

        return checked

    class Env(SandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**", "%"})

        def call_binop(self, context, operator, left, right):
            if operator == "*":
                for seq, n in ((left, right), (right, left)):
                    sized = isinstance(seq, str | list | tuple) and isinstance(n, int)
                    if sized and len(seq) * n > MAX_COMMAND_BYTES:
                        raise SecurityError("repetition result too large")
                return left * right
            if operator == "**":
                if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                    raise SecurityError(f"exponent {right} is larger than {MAX_EXPONENT:,}")
                if isinstance(left, int) and isinstance(right, int) and left.bit_length() * right > 100_000:
                    raise SecurityError("power result too large")  # one huge pow cannot be interrupted
                return left**right
            if isinstance(left, str) and _WIDE_FORMAT.search(left):
                raise SecurityError("format width too large")
            return left % right

        def call(__self, __context, __obj, *args, **kwargs):  # Jinja's own signature
            bounded(args, kwargs)
            return super().call(__context, __obj, *args, **kwargs)

        def wrap_str_format(self, value):
            wrapped = super().wrap_str_format(value)
            if wrapped is not None and _WIDE_FORMAT.search(value.__self__):
                raise SecurityError("format width too large")
            return wrapped

    env = Env(
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=lambda value: "" if value is None else value,
    )
    env.filters = {name: guard(f) for name, f in env.filters.items()}
    env.filters.update(ds=ds, ds_nodash=ds_nodash, ts=ts, ts_nodash=ts_nodash)
    env.globals = {
        "range": safe_range,
        "ds_add": ds_add,
        "days": lambda n=1: timedelta(days=_small(n)),
        "hours": lambda n=1: timedelta(hours=_small(n)),
    }
    return env


def _small(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or abs(n) > MAX_NUMBER_ARG:
        raise _Security(f"days()/hours() take a whole number up to {MAX_NUMBER_ARG:,}")
    return n
