"""The wire contract between coordinators and whatever runs their jobs: versioned, tolerant.

Two kinds of message cross it: the *task* a coordinator sends (``JobTask.to_dict`` plus ``"v"``) and
the *events* a runner sends back (``started``, ``try``, ``ended``) on a run's Redis stream (Celery) or
in the local pool's journal and pipe. Both carry ``WIRE_VERSION``. Readers accept any version and
ignore fields they do not know (a newer worker may add some); what cannot be decoded at all raises
``WireError`` with the reason, so the reader can log it, drop it and fail that one job, never hang.

An event is one JSON array: ``[version, kind, attempt, job, first_try, epoch, body]`` (workers of
the first release sent it without the leading version: still read).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

WIRE_VERSION = 1
EVENT_KINDS = ("started", "try", "ended")


class WireError(ValueError):
    """A message that cannot be decoded: the reason, for a log line and the job's ERROR detail."""


@dataclass(frozen=True, slots=True)
class WireEvent:
    kind: str
    attempt_id: int
    job_id: str
    first_try: int
    epoch: int
    body: dict[str, Any]


def encode_event(kind: str, attempt_id: int, job_id: str, first_try: int, epoch: int, body: dict) -> str:
    return json.dumps([WIRE_VERSION, kind, attempt_id, job_id, first_try, epoch, body])


def decode_event(raw: bytes | str, kinds: tuple[str, ...] = EVENT_KINDS) -> WireEvent:
    """One event; ``kinds`` the kinds this reader knows (the local journal adds its own two)."""
    try:
        data = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise WireError(f"not JSON: {exc}") from None
    if not isinstance(data, list):
        raise WireError(f"not an event array: {type(data).__name__}")
    if data and isinstance(data[0], str):  # the first release: no version in front
        data = [0, *data]
    if len(data) < 7:
        raise WireError(f"an event needs 7 fields, got {len(data)}")
    _version, kind, attempt, job, first_try, epoch, body = data[:7]  # later fields: newer writers
    if kind not in kinds:
        raise WireError(f"unknown event kind {str(kind)[:40]!r}")
    if not isinstance(job, str) or not isinstance(body, dict):
        raise WireError("bad job id or body")
    try:
        return WireEvent(kind, int(attempt), job, int(first_try), int(epoch), body)
    except (TypeError, ValueError) as exc:
        raise WireError(f"bad number: {exc}") from None


def known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``data`` that are fields of dataclass ``cls`` (unknown ones are a newer
    writer's additions: ignored, never a TypeError)."""
    fields = cls.__dataclass_fields__
    return {k: v for k, v in data.items() if k in fields}
