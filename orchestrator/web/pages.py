"""The web view's HTML pages: runs list, run page (and its live fragment), job logs, confirm-then-act.

Each handler parses the request, calls one library function and renders a template — the CLI's
shape, on a page. Actions are two steps: ``GET .../confirm`` shows the action's dry run with a form
carrying the CSRF token; ``POST .../act`` checks the token and acts through ``web.actions``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from orchestrator.db.queries import RunFilter
from orchestrator.errors import UserError
from orchestrator.inspection import run_history
from orchestrator.limits import MAX_ID
from orchestrator.listing import run_filter, runs_counts, runs_list
from orchestrator.loader import JOB_ID_RE
from orchestrator.web import actions, fragments
from orchestrator.web.model import run_page, version
from workers.statuses import AttemptStatus, JobStatus, severity

PAGE_SIZE = 50
LOG_SHOWN = 256 * 1024  # characters of a stream shown on the job page (the raw link has it all)


def _short_time(value: str | None) -> str:
    if not value:
        return ""
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return value


def _duration(value: float | None) -> str:
    if value is None:
        return ""
    if value < 60:
        return f"{value:.2f}s"
    minutes, seconds = divmod(int(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def _tone(status: str | None) -> str:
    """The CSS class of a status: its colour on every page and in the DAG."""
    if status in (JobStatus.SUCCESS, AttemptStatus.SUCCESS):
        return "ok"
    if status in (JobStatus.RUNNING, JobStatus.QUEUED):
        return "live"
    return severity(status or "") or "idle"


FILTERS = {"short_time": _short_time, "duration": _duration, "tone": _tone}


def _int(text: str | None, default: int | None, low: int = 1, high: int = MAX_ID) -> int | None:
    try:
        value = int(text) if text not in (None, "") else default
    except ValueError:
        raise UserError(f"not a number: {text[:40]!r}") from None
    if value is not None and not low <= value <= high:
        raise UserError(f"out of range: {value} (between {low} and {high})")
    return value


def _run_id(request: Request) -> int:
    return _int(request.path_params["run_id"], None)


def _job_id(text: str | None) -> str | None:
    """A job id from a URL or form: the loader's own rule, so nothing else reaches a query."""
    if text is None or JOB_ID_RE.fullmatch(text):
        return text
    raise UserError(f"not a job id: {text[:60]!r}")


def _text(text: str | None, what: str) -> str | None:
    """Free text for a filter: bounded, no NUL or lone surrogates (a database refuses them)."""
    if text is None:
        return None
    if len(text) > 500 or "\x00" in text or any("\ud800" <= c <= "\udfff" for c in text):
        raise UserError(f"{what}: not a valid value")
    return text


def _render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    identity = request.scope["state"]["identity"]
    base = {"user": identity.user if identity else None}
    return request.app.state.templates.TemplateResponse(
        request, name, {**base, **context}, status_code=status_code
    )


def query_filters(q) -> RunFilter:
    """The runs list's filters from a query string (the page's form and ``/api/runs``)."""
    status = q.get("status") or None
    if status is not None and status not in AttemptStatus.__members__:
        raise UserError(f"status: one of {', '.join(AttemptStatus)}")
    workflow = _text(q.get("workflow") or None, "workflow")
    return run_filter(workflow, status, _text(q.get("logical_date") or None, "logical_date"))


def runs_page(request: Request) -> Response:
    q = request.query_params
    filters = query_filters(q)
    status = filters.status
    limit = _int(q.get("limit"), PAGE_SIZE, 1, 1000)
    before = _int(q.get("before"), None)
    ctx = request.app.state.ctx
    data = runs_list(ctx, limit, filters, before)
    counts = runs_counts(ctx, filters)
    shown = data["runs"]
    keep = {k: v for k, v in (("workflow", q.get("workflow")), ("logical_date", q.get("logical_date"))) if v}
    older = None
    if len(shown) == limit:
        older = "?" + urlencode(
            {**keep, **({"status": status} if status else {}), "before": shown[-1]["run_id"]}
        )
    return _render(
        request,
        "runs.html",
        {
            "runs": shown,
            "counts": counts,
            "total": sum(counts.values()),
            "filters": {
                "workflow": q.get("workflow") or "",
                "status": status or "",
                "logical_date": q.get("logical_date") or "",
            },
            "keep": urlencode(keep),
            "statuses": list(AttemptStatus),
            "older": older,
            "paged": before is not None,
        },
    )


def _run_context(request: Request, run_id: int) -> dict[str, Any]:
    page = run_page(request.app.state.ctx, run_id, request.app.state.workflows)
    reasons = page["status"]["next_attempt"]["reasons"]
    return {
        "run_id": run_id,
        **page,
        "dag_svg": None
        if page["layout"] is None
        else fragments.dag_svg(run_id, page["layout"], page["states"], _tone),
        "job_rows": fragments.job_rows(run_id, page["jobs"], reasons, _tone, _duration),
    }


def run_view(request: Request) -> Response:
    run_id = _run_id(request)
    done = request.query_params.get("done")
    context = _run_context(request, run_id)
    return _render(request, "run.html", {**context, "done": done, "q": request.query_params})


def run_live(request: Request) -> Response:
    """The live part of the run page, for the page's script to swap in; 304 while nothing changed."""
    run_id = _run_id(request)
    tag = f'"{version(request.app.state.ctx, run_id)}"'
    if request.headers.get("if-none-match") == tag:
        return Response(status_code=304, headers={"ETag": tag})
    context = _run_context(request, run_id)
    response = _render(request, "_live.html", context)
    response.headers["ETag"] = f'"{context["version"]}"'
    return response


def job_view(request: Request) -> Response:
    from orchestrator.joblogs import job_logs

    run_id = _run_id(request)
    job_id = _job_id(request.path_params["job_id"])
    attempt = _int(request.query_params.get("attempt"), None)
    logs = job_logs(request.app.state.ctx, run_id, job_id, attempt)
    tries = []
    for t in logs["tries"]:
        shown = {}
        for stream in ("stdout", "stderr"):
            text = getattr(t, stream)
            cut = len(text) > LOG_SHOWN
            shown[stream] = ("[… the start is in the raw log]\n" + text[-LOG_SHOWN:]) if cut else text
        tries.append({**t.as_dict(), **shown})
    # Every attempt that had a row for this job (what it did each time), to open its tries.
    rows = run_history(request.app.state.ctx, run_id, job_id)["rows"] if logs["attempt_id"] else []
    return _render(
        request,
        "job.html",
        {"run_id": run_id, "job_id": job_id, "logs": logs, "tries": tries, "rows": rows},
    )


def job_raw_log(request: Request) -> Response:
    from orchestrator.joblogs import job_logs

    run_id = _run_id(request)
    q = request.query_params
    stream = q.get("stream", "stdout")
    if stream not in ("stdout", "stderr"):
        raise UserError("stream: stdout or stderr")
    logs = job_logs(
        request.app.state.ctx,
        run_id,
        _job_id(request.path_params["job_id"]),
        _int(q.get("attempt"), None),
        _int(q.get("try"), None),
    )
    text = "".join(getattr(t, stream) for t in logs["tries"][-1:])
    return PlainTextResponse(text, headers={"Content-Disposition": "inline"})


def _action_request(run_id: int, data) -> actions.ActionRequest:
    given = data.getlist("job") if hasattr(data, "getlist") else data.get("jobs", ())
    jobs = tuple(_job_id(str(j)) for j in given if j)
    return actions.ActionRequest(
        run_id, str(data.get("action", "")), jobs, str(data.get("with_upstream", "")) in ("1", "true", "on")
    )


def confirm_view(request: Request) -> Response:
    run_id = _run_id(request)
    req = _action_request(run_id, request.query_params)
    preview = actions.preview(request.app.state.ctx, req)
    identity = request.scope["state"]["identity"]
    return _render(
        request,
        "confirm.html",
        {
            "run_id": run_id,
            "req": req,
            "preview": preview,
            "csrf": request.app.state.auth.csrf_token(identity),
        },
    )


async def act_view(request: Request) -> Response:
    from starlette.concurrency import run_in_threadpool

    run_id = _run_id(request)
    form = await request.form(max_files=0, max_fields=10_000)
    identity = request.scope["state"]["identity"]
    if not request.app.state.auth.csrf_ok(identity, str(form.get("csrf_token") or "")):
        return _render(
            request, "error.html", {"lines": ["refused: missing or wrong CSRF token"], "code": 403}, 403
        )
    req = _action_request(run_id, form)
    result = await run_in_threadpool(actions.perform, request.app.state.ctx, req, identity.user)
    query = {"done": req.action}
    if req.action.startswith("resume"):
        query["attempt"] = str(result.get("attempt_id") or "")
    return RedirectResponse(f"/runs/{run_id}?{urlencode(query)}", status_code=303)


def routes() -> list[Route]:
    return [
        Route("/", runs_page, name="runs"),
        Route("/runs/{run_id}", run_view, name="run"),
        Route("/runs/{run_id}/live", run_live, name="run_live"),
        Route("/runs/{run_id}/confirm", confirm_view, name="confirm"),
        Route("/runs/{run_id}/act", act_view, methods=["POST"], name="act"),
        Route("/runs/{run_id}/jobs/{job_id}", job_view, name="job"),
        Route("/runs/{run_id}/jobs/{job_id}/raw", job_raw_log, name="job_raw"),
    ]
