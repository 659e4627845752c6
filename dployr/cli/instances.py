"""``dployr instances`` and ``dployr instance ID``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import asyncclick as click

from dployr.cli import Options, json_option

if TYPE_CHECKING:
    from dployr.protocol.messages import InstanceInfo


def _show(instance: InstanceInfo) -> None:
    from dployr.cli.output import plural, services_table

    click.echo(
        f"instance {instance.name} ({instance.id}) on {instance.hostname}, "
        f"dployr {instance.version}, {plural(len(instance.services), 'service')}"
    )
    if instance.services:
        services_table(instance.services)
    disk_line(instance)


def disk_line(instance: InstanceInfo) -> None:
    """One line when the instance's disk is full (nothing otherwise)."""
    from dployr.cli.output import visible

    if instance.disk_full:
        click.echo(
            visible(
                f"instance {instance.name}: disk full, log history paused "
                f"({instance.log_lines_dropped} lines dropped so far); "
                "make room in the data dir, or delete a service"
            )
        )


@click.command()
@json_option
@click.pass_obj
async def instances(options: Options) -> None:
    """List instances (machines) and the services each runs."""
    from dployr.cli.output import emit

    async with options.client() as client:
        found = await client.instances()

    def show_all(rows: Sequence[InstanceInfo]) -> None:
        for row in rows:
            _show(row)

    emit(found, options.json, show_all)


@click.command()
@click.argument("id")
@json_option
@click.pass_obj
async def instance(options: Options, id: str) -> None:
    """Show one instance and its services."""
    from dployr.cli.output import emit

    async with options.client() as client:
        found = await client.instance(id)
    emit(found, options.json, _show)
