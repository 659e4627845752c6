"""The ``dployr`` command line: one module per command group, run on trio.

Imports stay lazy: each command imports what it needs when it runs, so that a quick
command such as ``dployr service status`` does not pay for the daemon's start-up.
Errors are one line on stderr and exit 1 (usage errors exit 2), never a traceback. With
``--json`` an error is JSON on stdout instead, ``{"error": {"code": ..., "message": ...}}``,
with the same exit code: a script reads one JSON document from stdout either way.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import asyncclick as click
import attrs

from dployr import __version__

if TYPE_CHECKING:
    from dployr.cli.client import Client

F = TypeVar("F", bound=Callable[..., Any])


@attrs.define
class _ErrorStyle:
    """How :func:`main` prints an error; ``json`` is set once ``--json`` is parsed.

    A plain object, not a context variable: the parsing runs in trio's tasks, the printing
    after ``trio.run`` has returned.
    """

    json: bool = False


_error_style = _ErrorStyle()


@attrs.define
class Options:
    """The global options, shared by every command through the click context."""

    data_dir: Path | None = None
    server: str | None = None
    token: str | None = None
    json: bool = False
    ca: str | None = None

    def client(self) -> Client:
        """A client for the daemon these options point at."""
        from dployr.cli.client import Client, Target

        return Client(Target.resolve(self.server, self.token, self.data_dir, self.ca))


def json_option(command: F) -> F:
    """Add ``--json`` to a command (the global ``--json`` works too)."""

    def remember(ctx: click.Context, _: click.Parameter, value: bool) -> bool:
        if value:
            ctx.ensure_object(Options).json = True
            _error_style.json = True
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
    help="The data dir of the local daemon [default: $DPLOYR_HOME, else /var/lib/dployr "
    "as root, else ~/.local/share/dployr].",
)
@click.option("--server", envvar="DPLOYR_SERVER", help="A remote daemon's URL.")
@click.option("--token", envvar="DPLOYR_TOKEN", help="An API token for --server.")
@click.option(
    "--ca",
    "ca_file",
    metavar="FILE",
    envvar="DPLOYR_CA",
    help="Verify an https:// --server's certificate against this CA file (a private CA, "
    "or its own certificate) instead of the system's.",
)
@click.option("--json", "as_json", is_flag=True, help="Print data as JSON.")
@click.version_option(__version__, prog_name="dployr")
@click.pass_context
def cli(
    ctx: click.Context,
    data_dir: Path | None,
    server: str | None,
    token: str | None,
    ca_file: str | None,
    as_json: bool,
) -> None:
    """dployr deploys and supervises services on your own Linux machines."""
    options = ctx.ensure_object(Options)
    options.data_dir, options.server, options.token = data_dir, server, token
    options.ca = ca_file
    options.json = options.json or as_json
    if options.json:
        _error_style.json = True


def _register() -> None:
    # The command modules import Options from here, so they are imported after it exists.
    from dployr.cli.audit import audit
    from dployr.cli.demo import demo
    from dployr.cli.deploy import deploy
    from dployr.cli.deployments import deployments
    from dployr.cli.env import env
    from dployr.cli.images import images
    from dployr.cli.instances import instance, instances
    from dployr.cli.jobs import jobs
    from dployr.cli.logs import logs
    from dployr.cli.metrics import metrics
    from dployr.cli.rollback import rollback
    from dployr.cli.secrets import secrets
    from dployr.cli.service import service
    from dployr.cli.services import delete, get, list_services
    from dployr.cli.settings import settings
    from dployr.cli.tokens import tokens
    from dployr.cli.up import up

    for command in (
        rollback,
        metrics,
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
        jobs,
        instances,
        instance,
        secrets,
        demo,
        tokens,
        audit,
        images,
    ):
        cli.add_command(command)
    from dployr.cli.agent import agent  # issue 14: a machine of a cluster
    from dployr.cli.control_planes import control_planes  # which `dployr up` leads

    cli.add_command(agent)
    cli.add_command(control_planes)


_register()


def main() -> None:
    """The console script: run the command line on trio; every error is one line.

    Errors a user can act on (a DployrError, a refused request, a usage error) are one line
    on stderr: exit 1, or 2 for a usage error. Anything else is a bug, still reported in one
    line (``DPLOYR_DEBUG=1`` shows the traceback). With ``--json`` the line is JSON on
    stdout instead (see the module docstring); the exit code is the same.
    """
    code = 0
    try:
        import functools

        import trio

        # Straight on trio: what cli(_anyio_backend="trio") does, without importing anyio.
        result: object = trio.run(functools.partial(cli.main, standalone_mode=False))
        code = result if isinstance(result, int) else 0
    except BaseException as error:  # every error becomes one line, on purpose
        if os.environ.get("DPLOYR_DEBUG"):
            raise
        code, message = _explain(error)
        if message:
            from dployr.cli.output import visible  # messages quote what users and services wrote

            text = visible(" ".join(message.split()))
            if _error_style.json or _asks_json(sys.argv[1:]):
                json_error = {"error": {"code": _error_code(error, code), "message": text}}
                sys.stdout.write(json.dumps(json_error, ensure_ascii=False) + "\n")
            else:
                sys.stderr.write(f"error: {text}\n")
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away: silence the flush at exit too
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = code or 1
    sys.exit(code)


def _explain(error: BaseException) -> tuple[int, str | None]:
    """The exit code and one-line message for whatever ended the command line."""
    from dployr.errors import DployrError

    error = _first(error)
    if isinstance(error, SystemExit):
        if error.code is None or isinstance(error.code, int):
            return error.code or 0, None
        return 1, str(error.code)
    if isinstance(error, click.exceptions.Exit):
        return error.exit_code, None
    if isinstance(error, click.exceptions.NoArgsIsHelpError):
        sys.stderr.write(error.format_message() + "\n")  # a bare group shows its help
        return 2, None
    if isinstance(error, click.UsageError):
        hint = ""
        if error.ctx is not None:
            hint = f" (see `{error.ctx.command_path} --help`)"
        return 2, error.format_message() + hint
    if isinstance(error, click.ClickException):
        return error.exit_code, error.format_message()
    if isinstance(error, click.Abort | KeyboardInterrupt):
        return 1, "interrupted"
    if isinstance(error, DployrError):
        return 1, str(error)
    if isinstance(error, BrokenPipeError):
        return 1, None  # the reader went away (`dployr logs x | head`): nothing to say
    return 1, f"internal error: {type(error).__name__}: {error} (DPLOYR_DEBUG=1 shows more)"


def _asks_json(args: Sequence[str]) -> bool:
    """Whether ``--json`` is among the arguments (for errors raised before it was parsed)."""
    options = args[: args.index("--")] if "--" in args else args
    return "--json" in options


def _error_code(error: BaseException, exit_code: int) -> str:
    """The ``code`` of a JSON error: the daemon's own code, else what kind of failure."""
    from dployr.cli.client import ApiError, Unreachable
    from dployr.errors import DployrError

    error = _first(error)
    if isinstance(error, ApiError):
        return error.code
    if isinstance(error, Unreachable):
        return "unreachable"
    if exit_code == 2:
        return "usage"
    if isinstance(error, click.Abort | KeyboardInterrupt):
        return "interrupted"
    if isinstance(error, DployrError | click.ClickException | SystemExit):
        return "refused"
    return "internal"


def _first(error: BaseException) -> BaseException:
    """The first error of a (nested) exception group, or the error itself."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
