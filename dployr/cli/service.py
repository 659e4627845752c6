"""``dployr service start|stop|restart|status NAME``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncclick as click

from dployr.cli import Options, json_option

if TYPE_CHECKING:
    from dployr.cli.client import ServiceAction


@click.group()
def service() -> None:
    """Start, stop, restart a service, or show its status."""


async def _act(
    options: Options, name: str, action: ServiceAction | None, *, hard: bool = False
) -> None:
    from dployr.cli.output import emit, service_lines

    async with options.client() as client:
        if action is None:
            info = await client.service_info(name)
        else:
            info = await client.act(name, action, hard=hard)
    emit(info, options.json, service_lines)


@service.command()
@click.argument("name")
@json_option
@click.pass_obj
async def start(options: Options, name: str) -> None:
    """Start a stopped or failed service (its restart budget starts over)."""
    await _act(options, name, "start")


@service.command()
@click.argument("name")
@json_option
@click.pass_obj
async def stop(options: Options, name: str) -> None:
    """Stop a service: SIGTERM, its grace period, then SIGKILL."""
    await _act(options, name, "stop")


@service.command()
@click.argument("name")
@click.option("--hard", is_flag=True, help="Stop, then start (a moment without service).")
@json_option
@click.pass_obj
async def restart(options: Options, name: str, hard: bool) -> None:
    """Run the service again: same deployment, current environment.

    A service with a port is restarted without downtime: the new process starts beside
    the old one, which drains and stops once the new one is ready.
    """
    await _act(options, name, "restart", hard=hard)


@service.command()
@click.argument("name")
@json_option
@click.pass_obj
async def status(options: Options, name: str) -> None:
    """Show a service's status, health, pid and restarts."""
    await _act(options, name, None)
