"""A workflow's ``notify`` rules (the model only; sending is ``orchestrator.notify``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

EVENTS = ("failure", "success", "retry", "deadline_missed", "scheduler_failed")


@dataclass(frozen=True, slots=True)
class NotifyRule:
    on: tuple[str, ...]
    urls: tuple[str, ...] = ()
    command: str | tuple[str, ...] | None = None

    def normalized(self) -> dict[str, Any]:
        out: dict[str, Any] = {"on": list(self.on)}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.command is not None:
            out["command"] = list(self.command) if isinstance(self.command, tuple) else self.command
        return out

    def sinks(self) -> list[str]:
        """Each sink as stored on a row: ``url:<as written>`` or ``command:<json>``."""
        out = [f"url:{u}" for u in self.urls]
        if self.command is not None:
            out.append("command:" + json.dumps(self.normalized()["command"]))
        return out


def rules_from_snapshot(snapshot: dict[str, Any] | None) -> tuple[NotifyRule, ...]:
    """The rules of a stored workflow snapshot (already validated when it was stored)."""
    out = []
    for raw in (snapshot or {}).get("notify") or []:
        command = raw.get("command")
        out.append(
            NotifyRule(
                tuple(raw.get("on") or ()),
                tuple(raw.get("urls") or ()),
                tuple(command) if isinstance(command, list) else command,
            )
        )
    return tuple(out)
