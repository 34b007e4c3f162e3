"""Notifications: an outbox written with the state change that causes it, delivered with retries.

A workflow's ``notify`` rules name events (``failure``, ``success``, ``retry``, ``deadline_missed``,
``scheduler_failed``) and sinks: apprise URLs (Slack, e-mail, Teams, PagerDuty, ``json://`` webhooks
...) and/or a ``command`` that receives the event as JSON on stdin. When an event happens, one row per
sink goes into ``notifications`` *in the same transaction* as what caused it (the attempt's end, a
try's record, a slot's failure): an event that happened is never lost, one that did not is never
sent. ``deliver`` sends pending rows — the coordinator right after the attempt ends, else the next
``resume`` or scheduler pass — each claimed first (a conditional update), so two deliverers never
send the same row; a failed send is retried with backoff up to ``MAX_TRIES``. Delivery never blocks or
fails a run: every send has a timeout and every error is recorded on the row.

URLs may reference environment variables (``${SLACK_WEBHOOK}``): stored and shown as written, expanded
only in the process that sends, from its environment.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, or_, select, update

from orchestrator.db.bulk import insert_many_ignoring_duplicates
from orchestrator.db.engine import read_tx, write_tx
from orchestrator.db.schema import notifications, utcnow
from orchestrator.notify_rules import NotifyRule
from workers.secrets import redact_urls

log = logging.getLogger("executioner.notify")

MAX_TRIES = 10
SEND_TIMEOUT = 10.0  # seconds, one send
STALE_CLAIM = timedelta(minutes=5)  # a claim older than this: its deliverer died, take it over
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def outbox_rows(
    rules: Iterable[NotifyRule],
    event: str,
    payload: dict[str, Any],
    *,
    run_id: int | None,
    attempt_id: int | None,
    key: str = "",
) -> list[dict[str, Any]]:
    """Rows for ``event`` (one per sink of each rule that wants it). ``key`` makes an event unique
    within its run and attempt (a job and try for ``retry``), so replaying it adds nothing."""
    now = utcnow()
    rows = []
    for index, rule in enumerate(rules):
        if event not in rule.on:
            continue
        for sink in rule.sinks():
            rows.append(
                {
                    "run_id": run_id,
                    "attempt_id": attempt_id,
                    "event": event,
                    "event_key": hashlib.sha256(
                        f"{run_id}:{attempt_id}:{event}:{key}:{index}:{sink}".encode()
                    ).hexdigest(),
                    "sink": sink[:2000],
                    "payload": {"v": 1, "event": event, **payload},
                    "status": "pending",
                    "tries": 0,
                    "created_at": now,
                    "next_try_at": now,
                }
            )
    return rows


def record(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """In the caller's transaction: the state change and its notifications commit together."""
    insert_many_ignoring_duplicates(conn, notifications, rows)


# -- delivery ------------------------------------------------------------------------------------------


class Sender(ABC):
    @abstractmethod
    def send(self, sink: str, payload: dict[str, Any]) -> None:
        """Deliver or raise (the message is recorded, secrets redacted)."""


class DefaultSender(Sender):
    """apprise for URLs, a subprocess for commands."""

    def send(self, sink: str, payload: dict[str, Any]) -> None:
        kind, _, target = sink.partition(":")
        if kind == "url":
            _send_url(expand(target), payload)
        elif kind == "command":
            _send_command(json.loads(target), payload)
        else:
            raise ValueError(f"unknown sink kind {kind!r}")


class RecordingSender(Sender):
    """A stub for tests: keeps what it was asked to send."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.fail = fail

    def send(self, sink: str, payload: dict[str, Any]) -> None:
        if self.fail:
            raise ConnectionError("receiver down")
        self.sent.append((sink, payload))


def expand(url: str) -> str:
    """``${NAME}`` from this process's environment; a missing one is an error (never sent half-made)."""

    def value(match: re.Match) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise KeyError(f"{name} is not set where the notification is sent")
        return os.environ[name]

    return _VAR.sub(value, url)


def _send_url(url: str, payload: dict[str, Any]) -> None:
    import apprise  # imported here: ~140 ms that only a delivery needs

    notifier = apprise.Apprise()
    if not notifier.add(url):
        raise ValueError("apprise does not understand this URL")
    ok = notifier.notify(title=payload.get("title", "executioner"), body=json.dumps(payload, default=str))
    if not ok:
        raise ConnectionError("apprise could not deliver it")


def _send_command(command: str | list[str], payload: dict[str, Any]) -> None:
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
    done = subprocess.run(
        argv,
        input=json.dumps(payload, default=str).encode(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=SEND_TIMEOUT * 3,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {done.stderr.decode(errors='replace')[-200:]}")


def deliver(
    engine: Engine,
    *,
    run_id: int | None = None,
    sender: Sender | None = None,
    budget: float = 15.0,
    due_only: bool = True,
    clock=time.monotonic,
) -> int:
    """Send what is due (of ``run_id``, or of every run); at most ``budget`` seconds. Returns the
    number sent. Never raises: delivery must not fail what called it. ``due_only=False`` (a person
    resuming the run) does not wait out the backoff of earlier failed sends."""
    sender = sender or DefaultSender()
    me = f"{socket.gethostname()}:{os.getpid()}"
    end = clock() + budget
    sent = 0
    try:
        for row_id, sink, payload, tries in _due(engine, run_id, due_only):
            if clock() >= end:
                break
            if not _claim(engine, row_id, me):
                continue  # another deliverer has it
            try:
                sender.send(sink, {**payload, "id": row_id})
            except Exception as exc:  # whatever the sink raised: recorded, retried later
                _failed(engine, row_id, tries + 1, _describe(exc))
                continue
            _sent(engine, row_id)
            sent += 1
    except Exception as exc:  # the history is away: the next pass sends them
        log.warning("notifications not delivered now: %s", _describe(exc))
    return sent


def _due(engine: Engine, run_id: int | None, due_only: bool = True) -> list[tuple[int, str, dict, int]]:
    now = utcnow()
    n = notifications.c
    waiting = n.status.in_(["pending", "retrying"])
    query = select(n.id, n.sink, n.payload, n.tries).where(
        or_(
            (waiting & (n.next_try_at <= now)) if due_only else waiting,
            (n.status == "sending") & (n.claimed_at < now - STALE_CLAIM),
        )
    )
    if run_id is not None:
        query = query.where(n.run_id == run_id)
    with read_tx(engine) as conn:
        return [tuple(r) for r in conn.execute(query.order_by(n.id).limit(1000))]


def _claim(engine: Engine, row_id: int, me: str) -> bool:
    now = utcnow()
    n = notifications.c
    with write_tx(engine) as conn:
        done = conn.execute(
            update(notifications)
            .where(
                n.id == row_id,
                or_(
                    n.status.in_(["pending", "retrying"]),
                    (n.status == "sending") & (n.claimed_at < now - STALE_CLAIM),
                ),
            )
            .values(status="sending", claimed_by=me[:300], claimed_at=now)
        )
        return done.rowcount == 1


def _sent(engine: Engine, row_id: int) -> None:
    with write_tx(engine) as conn:
        conn.execute(
            update(notifications).where(notifications.c.id == row_id).values(status="sent", sent_at=utcnow())
        )


def _failed(engine: Engine, row_id: int, tries: int, error: str) -> None:
    status = "failed" if tries >= MAX_TRIES else "retrying"
    delay = timedelta(seconds=min(300, 2**tries))
    with write_tx(engine) as conn:
        conn.execute(
            update(notifications)
            .where(notifications.c.id == row_id)
            .values(status=status, tries=tries, last_error=error[:1000], next_try_at=utcnow() + delay)
        )


def _describe(exc: BaseException) -> str:
    # Never an expanded URL: apprise messages may carry one; credentials in URLs are redacted too.
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    for value in os.environ.values():
        if len(value) >= 8 and value in text:
            text = text.replace(value, "***")
    return redact_urls(text)[:500]


def status_rows(conn: Connection, run_id: int) -> list[dict[str, Any]]:
    """A run's notifications as ``status`` shows them (sinks as written: never expanded)."""
    n = notifications.c
    return [
        {
            "event": r.event,
            "sink": redact_urls(r.sink),
            "status": r.status,
            "tries": r.tries,
            "last_error": r.last_error,
            "sent_at": r.sent_at.isoformat() if isinstance(r.sent_at, datetime) else None,
        }
        for r in conn.execute(select(notifications).where(n.run_id == run_id).order_by(n.id))
    ]
