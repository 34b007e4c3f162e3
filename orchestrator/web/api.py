"""The JSON API: the CLI's ``--json`` shapes over HTTP, described by ``/api/openapi.json``.

Each endpoint's docstring holds its OpenAPI operation (YAML), which Starlette's ``SchemaGenerator``
gathers into the description: the documentation sits beside the code it documents.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.schemas import SchemaGenerator

from orchestrator.errors import UserError
from orchestrator.inspection import run_audit, run_history, run_status
from orchestrator.listing import runs_counts, runs_list
from orchestrator.web import actions
from orchestrator.web.pages import PAGE_SIZE, _action_request, _int, _job_id, _run_id, query_filters

SCHEMAS = SchemaGenerator(
    {
        "openapi": "3.0.3",
        "info": {
            "title": "Executioner",
            "version": "1",
            "description": "Runs, attempts, jobs and tries, in the shapes of the CLI's --json output. "
            "Authenticate with HTTP basic auth or 'Authorization: Bearer <EXECUTIONER_WEB_TOKEN>'; "
            "a POST authenticated by basic auth also needs the 'X-CSRF-Token' header (GET /api/csrf).",
        },
    }
)


def _json(data, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status, headers={"Cache-Control": "no-store"})


def api_runs(request: Request) -> Response:
    """
    get:
      summary: Runs, newest first (executioner runs --json), with counts per status and the next page.
      parameters:
        - {name: workflow, in: query, schema: {type: string}}
        - {name: status, in: query, schema: {type: string, enum: [RUNNING, SUCCESS, FAILED, PARTIAL, CANCELLED, INTERRUPTED]}}
        - {name: logical_date, in: query, schema: {type: string}, description: "YYYY-MM-DD (its day) or ISO date-time"}
        - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 1000, default: 50}}
        - {name: before, in: query, schema: {type: integer}, description: "only runs with a smaller id (next page)"}
      responses:
        200: {description: "{runs: [...], counts: {STATUS: n}, next_before: int|null}"}
        400: {description: "{error, lines}"}
    """
    q = request.query_params
    filters = query_filters(q)
    limit = _int(q.get("limit"), PAGE_SIZE, 1, 1000)
    ctx = request.app.state.ctx
    data = runs_list(ctx, limit, filters, _int(q.get("before"), None))
    runs = data["runs"]
    return _json(
        {
            **data,
            "counts": runs_counts(ctx, filters),
            "next_before": runs[-1]["run_id"] if len(runs) == limit else None,
        }
    )


def api_run(request: Request) -> Response:
    """
    get:
      summary: A run's attempts, effective job states and the plan a resume would follow (executioner status --json).
      parameters: [{name: run_id, in: path, required: true, schema: {type: integer}}]
      responses:
        200: {description: "the status --json object"}
        404: {description: "unknown run"}
    """
    return _json(run_status(request.app.state.ctx, _run_id(request)))


def api_history(request: Request) -> Response:
    """
    get:
      summary: Every job of every attempt with every try (executioner history --json).
      parameters:
        - {name: run_id, in: path, required: true, schema: {type: integer}}
        - {name: job, in: query, schema: {type: string}}
      responses:
        200: {description: "the history --json object"}
    """
    return _json(
        run_history(request.app.state.ctx, _run_id(request), _job_id(request.query_params.get("job") or None))
    )


def api_audit(request: Request) -> Response:
    """
    get:
      summary: Manual and forcing actions on the run (executioner audit --json).
      parameters: [{name: run_id, in: path, required: true, schema: {type: integer}}]
      responses:
        200: {description: "the audit --json object"}
    """
    return _json(run_audit(request.app.state.ctx, _run_id(request)))


def api_logs(request: Request) -> Response:
    """
    get:
      summary: The whole output of each ended try of a job (executioner logs).
      parameters:
        - {name: run_id, in: path, required: true, schema: {type: integer}}
        - {name: job_id, in: path, required: true, schema: {type: string}}
        - {name: attempt, in: query, schema: {type: integer}}
        - {name: try, in: query, schema: {type: integer}}
      responses:
        200: {description: "{run_id, job_id, attempt_id, status, tries: [{try, status, exit_code, stdout, stderr, complete, ...}]}"}
    """
    from orchestrator.joblogs import job_logs

    q = request.query_params
    logs = job_logs(
        request.app.state.ctx,
        _run_id(request),
        _job_id(request.path_params["job_id"]),
        _int(q.get("attempt"), None),
        _int(q.get("try"), None),
    )
    return _json({**logs, "tries": [t.as_dict() for t in logs["tries"]]})


def api_preview(request: Request) -> Response:
    """
    get:
      summary: What an action would do, read-only (resume/resume-failed give the resume --dry-run --json object).
      parameters:
        - {name: run_id, in: path, required: true, schema: {type: integer}}
        - {name: action, in: path, required: true, schema: {type: string, enum: [resume, resume-failed, mark-success, rollback, cancel]}}
        - {name: job, in: query, schema: {type: string}, description: "mark-success (repeatable) and rollback"}
        - {name: with_upstream, in: query, schema: {type: boolean}}
      responses:
        200: {description: "{action, plan|manual|cancel}"}
    """
    params = {**request.query_params, "action": request.path_params["action"]}
    params_list = [_job_id(j) for j in request.query_params.getlist("job")]
    req = actions.ActionRequest(
        _run_id(request),
        params["action"],
        tuple(params_list),
        str(params.get("with_upstream", "")) in ("1", "true", "on"),
    )
    return _json(actions.preview(request.app.state.ctx, req))


async def api_act(request: Request) -> Response:
    """
    post:
      summary: Act on a run, as the CLI would, recorded with the signed-in user's name.
      parameters:
        - {name: run_id, in: path, required: true, schema: {type: integer}}
        - {name: action, in: path, required: true, schema: {type: string, enum: [resume, resume-failed, mark-success, rollback, cancel]}}
        - {name: X-CSRF-Token, in: header, schema: {type: string}, description: "needed unless a bearer token authenticates the call"}
      requestBody:
        content:
          application/json:
            schema: {type: object, properties: {jobs: {type: array, items: {type: string}}, with_upstream: {type: boolean}}}
      responses:
        200: {description: "{action, ...}: resume gives the attempt it started"}
        400: {description: "refused, with the reason"}
        403: {description: "no or wrong CSRF token"}
        409: {description: "the run is locked by another command"}
    """
    identity = request.scope["state"]["identity"]
    if not request.app.state.auth.csrf_ok(identity, request.headers.get("x-csrf-token")):
        return _json({"error": "refused: missing or wrong CSRF token", "lines": []}, 403)
    body = {}
    if await request.body():
        try:
            body = await request.json()
        except ValueError:
            raise UserError("the body is not JSON") from None
        if not isinstance(body, dict):
            raise UserError("the body must be a JSON object")
    jobs = body.get("jobs", [])
    if not isinstance(jobs, list) or not all(isinstance(j, str) for j in jobs):
        raise UserError("jobs: a list of job ids")
    req = _action_request(
        _run_id(request),
        {
            "action": request.path_params["action"],
            "jobs": jobs,
            **({"with_upstream": "1"} if body.get("with_upstream") is True else {}),
        },
    )
    return _json(await run_in_threadpool(actions.perform, request.app.state.ctx, req, identity.user))


def api_csrf(request: Request) -> Response:
    """
    get:
      summary: The CSRF token for this user's POSTs (basic auth or loopback).
      responses:
        200: {description: "{csrf_token}"}
    """
    return _json({"csrf_token": request.app.state.auth.csrf_token(request.scope["state"]["identity"])})


def openapi(request: Request) -> Response:
    return _json(SCHEMAS.get_schema(routes=request.app.routes))


def routes() -> list[Route]:
    return [
        Route("/api/runs", api_runs),
        Route("/api/runs/{run_id}", api_run),
        Route("/api/runs/{run_id}/history", api_history),
        Route("/api/runs/{run_id}/audit", api_audit),
        Route("/api/runs/{run_id}/jobs/{job_id}/logs", api_logs),
        Route("/api/runs/{run_id}/preview/{action}", api_preview),
        Route("/api/runs/{run_id}/actions/{action}", api_act, methods=["POST"]),
        Route("/api/csrf", api_csrf),
        Route("/api/openapi.json", openapi, include_in_schema=False),
    ]
