"""``executioner web``: the Starlette application, built from one ``WebSettings`` (no globals).

Pages are rendered on the server (Jinja2, autoescaped) with one small script for live updates; every
asset is in the package, so the view works on machines without internet. The JSON API has the CLI's
``--json`` shapes. Sync endpoints run in Starlette's thread pool: the database calls are SQLAlchemy's.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.context import Context
from orchestrator.errors import (
    LockedError,
    ServiceUnavailableError,
    UnknownJobError,
    UnknownRunError,
    UserError,
    is_database_error,
)
from orchestrator.settings import Settings
from orchestrator.web.auth import WebAuth
from orchestrator.web.model import WorkflowCache

HERE = Path(__file__).parent
PUBLIC = ("/static/", "/healthz", "/favicon.ico")
# Our forms and API bodies are small (2,000 job ids are ~40 KB); nothing larger is read.
MAX_BODY = 1024 * 1024
SECURITY_HEADERS = [
    # Our own script and styles only; no frames (a confirm button must not be clickjacked).
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
        b"form-action 'self'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


@dataclass(slots=True)
class WebSettings:
    settings: Settings
    auth: WebAuth


class Guard:
    """Every request but the public paths needs an identity (``WebAuth``); the headers above go on
    every response. A pure ASGI middleware: no per-request task, nothing buffered (the log views)."""

    def __init__(self, app: ASGIApp, auth: WebAuth) -> None:
        self.app, self.auth = app, auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}

        async def send_secured(message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        if not self.auth.host_ok(headers.get("host")):
            await PlainTextResponse("unknown host", 421)(scope, receive, send_secured)
            return
        path = scope["path"]
        identity = self.auth.identify(headers.get("authorization"))
        if identity is None and not path.startswith(PUBLIC):
            response = PlainTextResponse(
                "authentication required", 401, headers={"WWW-Authenticate": 'Basic realm="executioner"'}
            )
            await response(scope, receive, send_secured)
            return
        scope.setdefault("state", {})["identity"] = identity
        if int(headers.get("content-length") or 0) > MAX_BODY:
            await PlainTextResponse("request body too large", 413)(scope, receive, send_secured)
            return
        await self.app(scope, _bounded(receive), send_secured)


def _bounded(receive: Receive) -> Receive:
    """A body sent without a length (chunked) is cut off past ``MAX_BODY`` as well."""
    seen = 0

    async def bounded():
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > MAX_BODY:
                raise UserError(f"request body larger than {MAX_BODY} bytes")
        return message

    return bounded


def error_response(request: Request, exc: Exception) -> Response:
    """A refusal the user can cause: JSON for the API, the error page otherwise (never a traceback)."""
    code = 400
    if isinstance(exc, UnknownRunError | UnknownJobError):
        code = 404
    elif isinstance(exc, LockedError):
        code = 409
    elif isinstance(exc, ServiceUnavailableError):  # the database or Redis: try again later
        code = 503
    lines = exc.lines() if isinstance(exc, UserError | LockedError) else [str(exc)]
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": lines[0] if lines else "", "lines": lines}, code)
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, "error.html", {"lines": lines, "code": code}, status_code=code)


def server_error(request: Request, exc: Exception) -> Response:
    """Anything else (the database unreachable, a bug): one line, never a traceback or SQL text; the
    server's log has the details."""
    from orchestrator.db.engine import describe

    line = (
        f"database error: {describe(exc)}"
        if is_database_error(exc)
        else f"internal error: {type(exc).__name__}"
    )
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": line, "lines": [line]}, 500)
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, "error.html", {"lines": [line], "code": 500}, status_code=500)


def create_app(web: WebSettings) -> Starlette:
    from orchestrator.web import api, pages

    ctx = Context(web.settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        ctx.close()

    import jinja2

    # autoescape everywhere: job ids, commands and job output are user-supplied text.
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
    env.filters.update(pages.FILTERS)
    templates = Jinja2Templates(env=env)
    routes = [
        *pages.routes(),
        *api.routes(),
        Route("/healthz", lambda request: PlainTextResponse("ok")),
        Route("/favicon.ico", lambda request: RedirectResponse("/static/favicon.svg", 301)),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={UserError: error_response, LockedError: error_response, 500: server_error},
    )
    app.state.ctx = ctx
    app.state.workflows = WorkflowCache()
    app.state.auth = web.auth
    app.state.templates = templates
    app.add_middleware(Guard, auth=web.auth)
    return app
