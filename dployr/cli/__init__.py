"""The ``dployr`` command line: one module per command group, run on trio.

Imports stay lazy: each command imports what it needs when it runs, so that a quick
command such as ``dployr service status`` does not pay for the daemon's start-up.
"""

from __future__ import annotations

import asyncclick as click

from dployr import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dployr")
def cli() -> None:
    """dployr deploys and supervises services on your own Linux machines."""


def _register() -> None:
    from dployr.cli import demo

    cli.add_command(demo.demo)


_register()


def main() -> None:
    """The console script: run the command line on trio (asyncclick defaults to asyncio)."""
    cli(_anyio_backend="trio")
