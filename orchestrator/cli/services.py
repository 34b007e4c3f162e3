"""Long-running services: ``worker`` and ``flower`` (Celery), built on the app from settings."""

from __future__ import annotations

import contextlib
import ipaddress
import os

import click

from orchestrator.errors import UserError

PASS_THROUGH = {
    "ignore_unknown_options": True,
    "allow_extra_args": True,
    "help_option_names": ["-h", "--help"],
}


def _app(ctx: click.Context):
    from workers.celery_app import create_app

    settings = ctx.find_root().obj["settings"]
    if not settings.broker_url:
        raise UserError(f"{ctx.command.name} needs a broker: set EXECUTIONER_BROKER_URL or --broker-url")
    return create_app(settings.worker)


@click.command(context_settings=PASS_THROUGH, add_help_option=False)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def worker(ctx: click.Context, celery_args: tuple[str, ...]) -> None:
    """Run a Celery worker for Executioner jobs.

    Options pass through to `celery worker`: -Q/--queues (the job `queue`s it serves; default:
    default), -c/--concurrency, -n/--hostname, -l/--loglevel, -P/--pool, --max-tasks-per-child ...
    """
    from workers.signing import require_key

    settings = ctx.find_root().obj["settings"]
    try:  # a broker others can reach: run only tasks a coordinator signed
        require_key(settings.broker_url, settings.worker.secret_key)
    except ValueError as exc:
        raise UserError(f"worker: {exc}") from None
    argv = ["worker", *celery_args]
    if not any(a.startswith(("-l", "--loglevel")) for a in celery_args):
        argv.append("--loglevel=INFO")
    _app(ctx).worker_main(argv)


@click.command(context_settings=PASS_THROUGH)
@click.option("--port", default=5555, show_default=True, type=int)
@click.option("--address", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--basic-auth",
    envvar="FLOWER_BASIC_AUTH",
    help="user:password[,user2:password2] [env FLOWER_BASIC_AUTH].",
)
@click.option(
    "--unauthenticated-api", is_flag=True, help="No authentication at all: loopback addresses only."
)
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def flower(ctx, port, address, basic_auth, unauthenticated_api, flower_args) -> None:
    """Run Flower on Executioner's Celery app: every job is a task named run<R>.a<A>.<job>.t<try>."""
    address = _effective_address(address, flower_args)
    if unauthenticated_api:
        if not _is_loopback(address):
            raise UserError(f"--unauthenticated-api is only allowed on a loopback --address, not {address!r}")
        if any(a.split("=", 1)[0] in ("--conf", "--unix-socket", "--unix_socket") for a in flower_args):
            raise UserError(
                "--unauthenticated-api: --conf and --unix-socket are not allowed (they could "
                "listen elsewhere than the checked address)"
            )
        os.environ["FLOWER_UNAUTHENTICATED_API"] = "true"
    elif not basic_auth:
        raise UserError(
            "flower needs --basic-auth user:password (or FLOWER_BASIC_AUTH), "
            "or --unauthenticated-api on a loopback address"
        )
    argv = ["flower", f"--port={port}", f"--address={address}"]
    if basic_auth:
        argv.append(f"--basic-auth={basic_auth}")
    app = _app(ctx)
    # Workers send task events only while someone watches; Flower re-asks every few seconds, we ask
    # now so that jobs started in its first seconds are seen too.
    with contextlib.suppress(Exception):
        app.control.enable_events()
    app.start([*argv, *flower_args])


def _effective_address(address: str, flower_args: tuple[str, ...]) -> str:
    """Where Flower will really listen: a pass-through ``--address`` (or FLOWER_ADDRESS) wins over
    ours, so that is the one to check, not the option's default."""
    found = os.environ.get("FLOWER_ADDRESS") or address
    args = list(flower_args)
    for i, arg in enumerate(args):
        if arg in ("--address", "-address") and i + 1 < len(args):
            found = args[i + 1]
        elif arg.startswith(("--address=", "-address=")):
            found = arg.split("=", 1)[1]
    return found


def _is_loopback(address: str) -> bool:
    if address in ("localhost", ""):
        return address == "localhost"
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
