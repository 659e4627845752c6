"""The ``dployr`` command line: one module per command group, run on trio.

Imports stay lazy: each command imports what it needs when it runs, so that a quick
command such as ``dployr service status`` does not pay for the daemon's start-up.
Errors are one line on stderr and exit 1 (usage errors exit 2), never a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncclick as click
import attrs

from dployr import __version__

F = TypeVar("F", bound=Callable[..., Any])


@attrs.define
class Options:
    """The global options, shared by every command through the click context."""

    data_dir: Path | None = None
    server: str | None = None
    token: str | None = None
    json: bool = False

    def client(self) -> Any:
        """A client for the daemon these options point at."""
        from dployr.cli.client import Client, Target

        return Client(Target.resolve(self.server, self.token, self.data_dir))


def json_option(command: F) -> F:
    """Add ``--json`` to a command (the global ``--json`` works too)."""

    def remember(ctx: click.Context, _: click.Parameter, value: bool) -> bool:
        if value:
            ctx.ensure_object(Options).json = True
        return value

    return click.option(
        "--json",
        "json_flag",
        is_flag=True,
        expose_value=False,
        callback=remember,
        help="Print data as JSON.",
    )(command)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="DPLOYR_HOME",
    help="The data dir of the local daemon [default: $DPLOYR_HOME or ~/.local/share/dployr].",
)
@click.option("--server", envvar="DPLOYR_SERVER", help="A remote daemon's URL.")
@click.option("--token", envvar="DPLOYR_TOKEN", help="An API token for --server.")
@click.option("--json", "as_json", is_flag=True, help="Print data as JSON.")
@click.version_option(__version__, prog_name="dployr")
@click.pass_context
def cli(
    ctx: click.Context, data_dir: Path | None, server: str | None, token: str | None, as_json: bool
) -> None:
    """dployr deploys and supervises services on your own Linux machines."""
    options = ctx.ensure_object(Options)
    options.data_dir, options.server, options.token = data_dir, server, token
    options.json = options.json or as_json


def _register() -> None:
    # The command modules import Options from here, so they are imported after it exists.
    from dployr.cli.demo import demo
    from dployr.cli.deploy import deploy
    from dployr.cli.deployments import deployments
    from dployr.cli.env import env
    from dployr.cli.instances import instance, instances
    from dployr.cli.logs import logs
    from dployr.cli.service import service
    from dployr.cli.services import delete, get, list_services
    from dployr.cli.settings import settings
    from dployr.cli.up import up

    for command in (
        up,
        deploy,
        list_services,
        get,
        delete,
        service,
        logs,
        settings,
        env,
        deployments,
        instances,
        instance,
        demo,
    ):
        cli.add_command(command)


_register()


def main() -> None:
    """The console script: run the command line on trio, errors as one line."""
    from dployr.errors import DployrError

    message: str | None = None
    try:
        cli(_anyio_backend="trio")
    except* DployrError as group:
        message = str(_first(group))
    except* KeyboardInterrupt:
        message = "interrupted"
    except* Exception as group:
        if os.environ.get("DPLOYR_DEBUG"):
            raise
        error = _first(group)
        message = f"internal error: {type(error).__name__}: {error} (DPLOYR_DEBUG=1 shows more)"
    if message is not None:
        sys.stderr.write(f"error: {' '.join(message.split())}\n")
        sys.exit(1)


def _first(group: BaseExceptionGroup[Any]) -> BaseException:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
