"""``executioner web``: the run-level web view (``orchestrator.web``), served by uvicorn."""

from __future__ import annotations

import click

PORT = click.IntRange(1, 65535)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8686, show_default=True, type=PORT)
@click.option(
    "--basic-auth",
    envvar="EXECUTIONER_WEB_BASIC_AUTH",
    help="user:password[,user2:password2] [env EXECUTIONER_WEB_BASIC_AUTH]. "
    "Scripts may use a bearer token instead [env EXECUTIONER_WEB_TOKEN].",
)
@click.option(
    "--unauthenticated",
    is_flag=True,
    help="No sign-in: every visitor acts as the user running the server. Loopback --host only.",
)
@click.option(
    "--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning"])
)
@click.pass_context
def web(
    ctx: click.Context, host: str, port: int, basic_auth: str | None, unauthenticated: bool, log_level
) -> None:
    """Serve the web view: runs, each run's DAG, jobs, tries, logs, audit trail, and actions."""
    import uvicorn

    from orchestrator.web.app import WebSettings, create_app
    from orchestrator.web.auth import WebAuth, configured_token

    settings = ctx.find_root().obj["settings"]
    auth = WebAuth.configure(
        basic_auth, configured_token(), unauthenticated, host, settings.worker.secret_key
    )
    app = create_app(WebSettings(settings, auth))
    # Host and port are given here, so uvicorn binds exactly the address checked above.
    uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False, proxy_headers=False)
