"""Rendering for people (rich tables on a terminal, aligned plain text otherwise) and machines (JSON)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from itertools import islice
from typing import Any

import click

from workers.statuses import AttemptStatus, severity


def is_tty() -> bool:
    return sys.stdout.isatty()


# ``--json`` of 100,000 jobs: a top-level list or mapping this long is written an item at a time, in
# writes of about a megabyte, instead of as one text of the whole (~100 MB for `history --json`).
STREAM_ITEMS = 1000
STREAM_CHUNK = 500  # items encoded together
_ENCODER = json.JSONEncoder(default=str)  # what json.dumps(data, default=str) uses


def emit_json(data: Any) -> None:
    """``json.dumps(data, default=str)`` and a newline, character for character."""
    pending: list[str] = []
    size = 0
    for piece in _pieces(data):
        pending.append(piece)
        size += len(piece)
        if size > 1 << 20:
            click.echo("".join(pending), nl=False)
            pending, size = [], 0
    pending.append("\n")
    click.echo("".join(pending), nl=False)


def _pieces(data: Any) -> Iterator[str]:
    if not isinstance(data, dict) or not all(type(k) is str for k in data):
        yield _ENCODER.encode(data)  # small, or keys json would convert: as json.dumps writes it
        return
    yield "{"
    for i, (key, value) in enumerate(data.items()):
        yield f"{', ' if i else ''}{_ENCODER.encode(key)}: "
        if isinstance(value, list) and len(value) > STREAM_ITEMS:
            yield "["
            for k in range(0, len(value), STREAM_CHUNK):
                # A slice encoded as a list, its brackets cut off: the items exactly as json writes
                # them, one encoder call per slice (one per item was a fifth of `status --json`).
                yield f"{', ' if k else ''}{_ENCODER.encode(value[k : k + STREAM_CHUNK])[1:-1]}"
            yield "]"
        elif isinstance(value, dict) and len(value) > STREAM_ITEMS and all(type(k) is str for k in value):
            yield "{"
            items = iter(value.items())
            for k in range(0, len(value), STREAM_CHUNK):
                chunk = dict(islice(items, STREAM_CHUNK))
                yield f"{', ' if k else ''}{_ENCODER.encode(chunk)[1:-1]}"
            yield "}"
        else:
            yield _ENCODER.encode(value)
    yield "}"


def line(text: str = "") -> None:
    click.echo(text)


def warning(text: str) -> None:
    click.echo(f"executioner: warning: {text}", err=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    cells = [[v if type(v) is str else "" if v is None else str(v) for v in row] for row in rows]
    if is_tty():
        from rich.console import Console
        from rich.table import Table

        t = Table(*headers, title=title, title_justify="left", header_style="bold")
        for row in cells:
            t.add_row(*row, style=_row_style(row))
        Console().print(t)
        return
    columns = list(zip(*cells, strict=True)) or [()] * len(headers)
    widths = [max([len(h), *map(len, column)]) for h, column in zip(headers, columns, strict=True)]
    # One format for every row (a cell's text is an argument, never part of the format): padding
    # cell by cell was a quarter of `status` on 100,000 jobs.
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [title] if title else []
    out.append(fmt.format(*headers).rstrip())
    out.extend(fmt.format(*row).rstrip() for row in cells)
    line("\n".join(out))  # one write: 100,000 rows echoed one by one took seconds


def _row_style(row: Sequence[str]) -> str | None:
    levels = {severity(v) for v in row}
    return "red" if "bad" in levels else "yellow" if "warn" in levels else None


def seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}s"


def outcome(result, *, as_json: bool) -> None:
    if as_json:  # a dict per job only when it is printed: 100,000 of them were the run's peak memory
        emit_json(
            {
                "run_id": result.run_id,
                "attempt_id": result.attempt_id,
                "status": str(result.status),
                "jobs": {j: o.as_dict() for j, o in result.jobs.items()},
                "warnings": result.warnings,
                **(result.inputs.as_dict() if result.inputs is not None else {}),
            }
        )
        return
    counts: dict[str, int] = {}
    for o in result.jobs.values():
        counts[str(o.status)] = counts.get(str(o.status), 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    line(f"run {result.run_id} attempt {result.attempt_id}: {result.status} ({summary})")
    bad = [(j, o) for j, o in result.jobs.items() if o.status.is_failure]
    for job_id, o in bad:
        line(f"  {job_id}: {o.status} exit={o.exit_code} retries={o.retry_count}")
    if bad or result.status in (AttemptStatus.CANCELLED, AttemptStatus.INTERRUPTED):
        line(f"resume with: executioner resume {result.run_id}")


def nothing_to_do(result, *, as_json: bool) -> None:
    if as_json:
        emit_json(
            {
                "run_id": result.run_id,
                "attempt_id": None,
                "status": result.status,
                "nothing_to_do": True,
                "jobs": {j: result.state[j].as_dict() for j in result.plan.decisions},
                "warnings": result.warnings,
            }
        )
        return
    line(f"run {result.run_id}: nothing to do, every selected job is effectively SUCCESS; no attempt written")


def dry_run(result, *, as_json: bool) -> None:
    data = result.as_dict()
    if as_json:
        emit_json(data)
        return
    head = "dry run" + (f" of run {result.run_id} attempt {result.attempt_id}" if result.run_id else "")
    line(f"{head}: {'valid' if result.valid else 'REFUSED'}; nothing was written")
    for text in data["warnings"]:
        warning(text)
    if data["logical_date"]:
        line(_inputs_line(data))
    if data["reasons"]:
        table(
            ["job", "action", "reason", "detail"],
            [
                [j, "run" if d["runs"] else "skip", d["reason"], d.get("detail", "")]
                for j, d in data["reasons"].items()
            ],
        )
    for job_id, command in data["commands"].items():
        if isinstance(command, list):
            command = " ".join(command)
        line(f"{job_id}: {command}")
    for change in data["changes"]:
        how = change.get("allowed_by") or f"REFUSED: {change['refused']}"
        line(f"change: {change['kind']} job={change['job']} field={change['field']} ({how})")
    for error in data["errors"]:
        line(f"error: {error}")


def _inputs_line(data: dict) -> str:
    params = ", ".join(f"{k}={v}" for k, v in (data.get("params") or {}).items())
    interval = f"[{data['data_interval_start']}, {data['data_interval_end']})"
    return f"logical date {data['logical_date']} (ds {data['ds']}), data interval {interval}" + (
        f"; params: {params}" if params else ""
    )


def status(data: dict, *, as_json: bool) -> None:
    if as_json:
        emit_json(data)
        return
    line(f"run {data['run_id']} ({data['application_name']}): {data['status']}")
    line(_inputs_line(data))
    if data["locked_by"]:
        h = data["locked_by"]
        line(f"locked by {h['host']} pid {h['pid']} ({h['what']}) since {h['since']}")
    for queue, served in (data.get("queues") or {}).items():
        if not served:
            warning(f"queue {queue!r}: no worker consuming; its jobs wait (executioner worker -Q {queue})")
    table(
        ["attempt", "status", "start", "end", "total", "ok", "failed", "skipped", "trigger", "hash"],
        [
            [
                a["attempt_id"],
                a["status"],
                a["start_time"],
                a["end_time"],
                a["total_jobs"],
                a["successful_jobs"],
                a["failed_jobs"],
                a["skipped_jobs"],
                f"{a['triggered_by']}: {a['trigger_reason']}",
                a["config_hash"][:12],
            ]
            for a in data["attempts"]
        ],
        title="attempts",
    )
    table(
        ["job", "status", "attempt", "exit", "retries", "marked"],
        [
            [j, s["status"], s["attempt_id"], s["exit_code"], s["retry_count"], "yes" if s["marked"] else ""]
            for j, s in data["jobs"].items()
        ],
        title="effective job states",
    )
    nxt = data["next_attempt"]
    line(f"a resume would be attempt {nxt['attempt_id']}: run {', '.join(nxt['will_run']) or 'nothing'}")


def runs(data: dict, *, as_json: bool) -> None:
    if as_json:
        emit_json(data)
        return
    table(
        ["run", "application", "status", "attempts", "started", "ds", "params"],
        [
            [
                r["run_id"],
                r["application_name"],
                r["status"],
                r["attempts"],
                r["start_time"],
                r["ds"],
                " ".join(f"{k}={v}" for k, v in (r["params"] or {}).items()),
            ]
            for r in data["runs"]
        ],
    )


def history(data: dict, *, as_json: bool) -> None:
    if as_json:
        emit_json(data)
        return
    rows = []
    for r in data["rows"]:
        tries = " ".join(f"{t['try']}:{t['status']}/{t['exit_code']}" for t in r["retry_history"])
        rows.append(
            [
                r["attempt_id"],
                r["job_id"],
                r["status"],
                r["reason"],
                r["exit_code"],
                seconds(r["duration"]),
                r["retry_count"],
                tries,
                r["worker"],
            ]
        )
    table(
        ["attempt", "job", "status", "reason", "exit", "duration", "retries", "tries", "worker"],
        rows,
        title=f"run {data['run_id']} history",
    )


def logs(found: dict) -> None:
    if not found["tries"]:  # a job that has not run yet, or is running: not an error
        status = found["status"]
        note = {
            "PENDING": "no output yet",
            "QUEUED": "no output yet",
            "RUNNING": "no try has ended yet (--follow to watch it)",
        }.get(status, "it did not run")
        click.echo(f"run {found['run_id']} job {found['job_id']}: {status}, {note}", err=True)
    for t in found["tries"]:
        exit_note = "" if t.exit_code is None else f" exit {t.exit_code}"
        error = f" ({t.error})" if t.error else ""
        line(f"=== attempt {t.attempt_id} try {t.try_number}: {t.status}{exit_note}{error} on {t.worker}")
        if not t.complete and t.log_uri:
            line(f"(the full log is at {t.log_uri}, not reachable from here: the history's tail follows)")
        for name, text in (("stdout", t.stdout), ("stderr", t.stderr)):
            if text:
                line(f"--- {name}")
                click.echo(text, nl=not text.endswith("\n"))


def log_chunk(kind: str, text: str) -> None:
    """``logs --follow``: output as it comes (stderr's to stderr), notes on stderr."""
    if not text:
        return
    if kind == "note":
        click.echo(f"executioner: {text}", err=True)
    else:
        click.echo(text, nl=False, err=kind == "err")
    (sys.stderr if kind != "out" else sys.stdout).flush()  # a reader (tail, grep) sees it now


def manual(result, *, as_json: bool) -> None:
    if as_json:
        emit_json(result.as_dict())
        return
    verb = {"mark_success": "marked SUCCESS", "rollback": "rolled back to PENDING"}[str(result.action)]
    state = verb.split()[-1]
    if result.dry_run:
        verb = f"would be {verb} (dry run: nothing was written)"
    if result.job_ids:
        line(f"run {result.run_id}: {verb}: {', '.join(result.job_ids)}")
    if result.unchanged:
        line(f"run {result.run_id}: already {state}, unchanged: {', '.join(result.unchanged)}")


def schedules(data: dict, *, as_json: bool) -> None:
    if as_json:
        emit_json(data)
        return
    for wf in data["workflows"]:
        where = f"{wf['schedule']} ({wf['timezone']})" if wf["schedule"] else "no schedule known"
        line(f"{wf['application_name']}: {where}")
        for n in wf["next"]:
            line(f"  next {n['fires_at']}  processes [{n['data_interval_start']}, {n['data_interval_end']})")
        for s in wf["last"]:
            run = f" run {s['run_id']} {s['run_status'] or ''}".rstrip() if s["run_id"] else ""
            why = f": {s['reason']}" if s["reason"] else ""
            line(f"  slot {s['slot']}  {s['outcome']}{run}{why}")


def backfill_progress(work, what: str) -> None:
    """One line per slot event, as a backfill goes (stdout is for the summary; this is progress)."""
    run = f" run {work.run_id}" if work.run_id else ""
    status = f" {work.status}" if work.status else ""
    reason = f" ({work.reason})" if work.reason else ""
    click.echo(
        f"slot {work.ds} [{work.interval.logical_date.isoformat()}]: {what}{run}{status}{reason}", err=True
    )


def backfill(result, *, as_json: bool, dry_run: bool) -> None:
    data = result.as_dict()
    if as_json:
        emit_json({**data, "dry_run": dry_run})
        return
    rows = [
        [s["ds"], s["logical_date"], s["action"], s["run_id"], s["status"], s["reason"]]
        for s in data["slots"]
    ]
    title = f"backfill of {data['application_name']}" + (" (dry run: nothing was written)" if dry_run else "")
    table(["ds", "logical date", "action", "run", "status", "note"], rows, title=title)
    if not dry_run:
        line(
            ", ".join(f"{n} {k}" for k, n in sorted(data["counts"].items()))
            + (" — interrupted" if data["interrupted"] else "")
        )


def audit(data: dict, *, as_json: bool) -> None:
    if as_json:
        emit_json(data)
        return
    table(
        ["when", "action", "jobs", "who", "after attempt", "details"],
        [
            [
                e["at"],
                e["action"],
                ", ".join(e["jobs"]),
                e["actor"],
                e["after_attempt"],
                " ".join(f"{k}={v}" for k, v in e["details"].items() if v not in (None, False, [], {})),
            ]
            for e in data["events"]
        ],
        title=f"run {data['run_id']} audit trail",
    )


def cancelled(result, *, as_json: bool) -> None:
    if as_json:
        emit_json(result.as_dict())
        return
    head = f"run {result.run_id} attempt {result.attempt_id}"
    if result.how == "settled" and result.status == "RUNNING":
        line(f"{head}: no live coordinator, jobs still run; `executioner resume {result.run_id}` awaits them")
    elif result.how == "settled":
        line(f"{head}: no live coordinator; settled as {result.status}")
    elif result.status == "RUNNING":
        line(f"{head}: cancel requested; its coordinator stops it within seconds")
    else:
        line(f"{head}: {result.status}")


def pruned(report, *, as_json: bool) -> None:
    if as_json:
        emit_json(report.as_dict())
        return
    rows = ", ".join(f"{n} {t}" for t, n in report.rows.items())
    verb = "removed" if report.deleted else "would remove (add --yes to remove them)"
    runs = report.run_ids
    span = f" (run {runs[0]} .. {runs[-1]})" if runs else ""
    line(f"runs created before {report.cutoff.isoformat()}: {verb}: {len(runs)} run(s){span}")
    line(f"  rows: {rows}; logs: {report.log_bytes} bytes")
    if report.skipped_running:
        line(f"  left alone (running): {', '.join(map(str, report.skipped_running))}")
