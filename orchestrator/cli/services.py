"""Long-running services: ``worker`` and ``flower`` (Celery), built on the app from settings."""

from __future__ import annotations

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
    if unauthenticated_api:
        if not _is_loopback(address):
            raise UserError(f"--unauthenticated-api is only allowed on a loopback --address, not {address!r}")
        os.environ["FLOWER_UNAUTHENTICATED_API"] = "true"
    elif not basic_auth:
        raise UserError(
            "flower needs --basic-auth user:password (or FLOWER_BASIC_AUTH), "
            "or --unauthenticated-api on a loopback address"
        )
    argv = ["flower", f"--port={port}", f"--address={address}"]
    if basic_auth:
        argv.append(f"--basic-auth={basic_auth}")
    _app(ctx).start([*argv, *flower_args])


def _is_loopback(address: str) -> bool:
    if address in ("localhost", ""):
        return address == "localhost"
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
