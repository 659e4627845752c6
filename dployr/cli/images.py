"""``dployr images prune``: the container images of dployr's deployments in podman's store."""

from __future__ import annotations

from typing import Any

import asyncclick as click

from dployr.cli import Options, json_option


@click.group()
def images() -> None:
    """The container images dployr pulled or built (podman's store)."""


@images.command("prune")
@json_option
@click.pass_obj
async def prune(options: Options) -> None:
    """Remove the images no kept release runs (needs an admin token).

    A container service keeps the images of its kept releases, so a rollback needs no
    pull; the images of releases pruned since, and of deleted services' deployments that
    are still recorded, go. An image a container uses stays.
    """
    from dployr.cli.output import emit

    async with options.client() as client:
        reply = await client.call("POST", "/images/prune")

    def show(data: dict[str, Any]) -> None:
        removed = data["removed"]
        for image in removed:
            click.echo(f"removed {image}")
        click.echo(f"{len(removed)} image{'s' if len(removed) != 1 else ''} removed")

    emit(reply, options.json, show)
