"""Run parameters: what a workflow declares (``ParamSpec``) and the typed values a run is given.

A run *is* its parameters: they are resolved once, at ``run``, from ``--param``/``--params-file`` and
the declared defaults, stored with the run in their JSON form (``to_json``), and every resume takes
them from there. Values come in as text (the command line) or as JSON/YAML values (a params file, a
default); both go through ``coerce``, so ``--param n=3`` and ``{"n": 3}`` mean the same run.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from typing import Any

PARAM_TYPES = ("string", "int", "float", "bool", "date", "datetime")
PARAM_FIELDS = ("type", "default", "required", "choices", "description")
# Names become environment variables (EXECUTIONER_PARAM_<NAME>) and template attributes.
PARAM_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
MAX_PARAMS = 200
MAX_CHOICES = 1000
MAX_VALUE_BYTES = 64 * 1024
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


class ParamError(ValueError):
    """A value that does not fit its parameter; the message is shown to the user as is."""


@dataclass(frozen=True, slots=True)
class ParamSpec:
    name: str
    type: str = "string"
    default: Any = None  # JSON form (see to_json); None: no default
    required: bool = False
    choices: tuple[Any, ...] | None = None  # JSON forms
    description: str = ""

    def normalized(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "required": self.required}
        if self.default is not None:
            out["default"] = self.default
        if self.choices is not None:
            out["choices"] = list(self.choices)
        if self.description:
            out["description"] = self.description
        return out

    @property
    def env_name(self) -> str:
        return f"EXECUTIONER_PARAM_{self.name.upper()}"


def coerce(spec: ParamSpec, raw: Any, tz: tzinfo = UTC) -> Any:
    """``raw`` (text or a JSON/YAML value) as the JSON form of ``spec``'s type; ``ParamError`` if not.

    JSON forms: str, int, float and bool as themselves, a date as ``YYYY-MM-DD``, a datetime as ISO
    8601 in UTC (a datetime written without an offset is read in ``tz``, the schedule's zone).
    """
    value = _coerce(spec.type, raw, tz)
    if spec.choices is not None and value not in spec.choices:
        shown = ", ".join(str(c) for c in spec.choices[:20])
        raise ParamError(f"must be one of {shown}, got {_show(raw)}")
    return value


def _coerce(kind: str, raw: Any, tz: tzinfo) -> Any:
    if isinstance(raw, str) and len(raw.encode("utf-8", "surrogatepass")) > MAX_VALUE_BYTES:
        raise ParamError(f"is longer than {MAX_VALUE_BYTES} bytes")
    if isinstance(raw, str) and ("\x00" in raw or any(0xD800 <= ord(c) <= 0xDFFF for c in raw)):
        raise ParamError("contains a NUL byte or an invalid character")
    if kind == "string":
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise ParamError(f"must be a string, got {_show(raw)}")
        return raw if isinstance(raw, str) else str(raw)
    if kind == "int":
        if isinstance(raw, int) and not isinstance(raw, bool):
            value = raw
        elif isinstance(raw, str) and re.fullmatch(r"[+-]?\d{1,18}", raw.strip()):
            value = int(raw)
        else:
            raise ParamError(f"must be a whole number, got {_show(raw)}")
        if abs(value) >= 2**63:
            raise ParamError(f"must be a whole number below 2**63, got {_show(raw)}")
        return value
    if kind == "float":
        try:
            value = float(raw) if isinstance(raw, str | int | float) and not isinstance(raw, bool) else None
        except (ValueError, OverflowError):
            value = None
        if value is None or not math.isfinite(value) or (isinstance(raw, str) and len(raw) > 64):
            raise ParamError(f"must be a finite number, got {_show(raw)}")
        return value
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in _TRUE + _FALSE:
            return raw.strip().lower() in _TRUE
        raise ParamError(f"must be true or false, got {_show(raw)}")
    if kind == "date":
        if isinstance(raw, date) and not isinstance(raw, datetime):
            return raw.isoformat()
        if isinstance(raw, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw.strip()):
            try:
                return date.fromisoformat(raw.strip()).isoformat()
            except ValueError:
                pass
        raise ParamError(f"must be a date YYYY-MM-DD, got {_show(raw)}")
    if kind == "datetime":
        return parse_datetime(raw, tz, ParamError).isoformat()
    raise ParamError(f"unknown type {kind!r}")  # the loader refuses it first


def parse_datetime(raw: Any, tz: tzinfo, error: type[Exception] = ValueError) -> datetime:
    """ISO 8601 date or date-time (offset optional: read in ``tz``) as an aware UTC datetime."""
    if isinstance(raw, datetime):
        value = raw
    elif isinstance(raw, date):
        value = datetime(raw.year, raw.month, raw.day)
    elif isinstance(raw, str) and 0 < len(raw) <= 64:
        text = raw.strip()
        try:
            value = datetime.fromisoformat(text) if "T" in text or " " in text else _midnight(text)
        except ValueError:
            value = None
        if value is None:
            raise error(f"must be an ISO 8601 date or date-time, got {_show(raw)}")
    else:
        raise error(f"must be an ISO 8601 date or date-time, got {_show(raw)}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise error(f"is out of range: {_show(raw)}") from None


def _midnight(text: str) -> datetime | None:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return None
    return datetime.combine(date.fromisoformat(text), datetime.min.time())


def resolve(
    specs: dict[str, ParamSpec], given: dict[str, Any], tz: tzinfo = UTC, *, placeholders: bool = False
) -> dict[str, Any]:
    """The run's parameter values (JSON forms): ``given`` over the defaults, every rule checked.

    Raises ``ParamError`` listing every problem at once. With ``placeholders`` (``validate``), a
    required parameter without a value gets a stand-in of its type so templates can still be checked.
    """
    problems = []
    for name in given:
        if name not in specs:
            known = ", ".join(specs) or "none declared"
            problems.append(f"unknown parameter {name!r} (declared: {known})")
    values: dict[str, Any] = {}
    for name, spec in specs.items():
        if name in given:
            try:
                values[name] = coerce(spec, given[name], tz)
            except ParamError as exc:
                problems.append(f"parameter {name!r} ({spec.type}) {exc}")
        elif spec.default is not None:
            values[name] = spec.default
        elif spec.required and not placeholders:
            problems.append(f"parameter {name!r} is required (--param {name}=VALUE)")
        elif spec.required:
            values[name] = placeholder(spec)
        else:
            values[name] = None
    if problems:
        raise ParamError("; ".join(problems))
    return values


def placeholder(spec: ParamSpec) -> Any:
    if spec.choices:
        return spec.choices[0]
    return {
        "string": spec.name,
        "int": 1,
        "float": 1.0,
        "bool": True,
        "date": "2000-01-01",
        "datetime": "2000-01-01T00:00:00+00:00",
    }[spec.type]


def template_value(spec: ParamSpec, value: Any, tz: tzinfo = UTC) -> Any:
    """A stored value as templates see it: dates as ``date``, datetimes as aware ``datetime`` in ``tz``."""
    if value is None:
        return None
    if spec.type == "date":
        return date.fromisoformat(value)
    if spec.type == "datetime":
        return datetime.fromisoformat(value).astimezone(tz)
    return value


def env_value(value: Any) -> str:
    """A stored value as ``EXECUTIONER_PARAM_<NAME>`` carries it: JSON's spelling for booleans."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_assignments(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``NAME=VALUE`` strings from ``--param`` (the last of a repeated name wins, as in make)."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ParamError(f"--param {_show(item)}: expected NAME=VALUE")
        out[name.strip()] = value
    return out


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
