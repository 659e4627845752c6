"""``dployr list``, ``dployr get NAME``, ``dployr delete NAME``."""

from __future__ import annotations

import sys

import asyncclick as click

from dployr.cli import Options, json_option


@click.command("list")
@json_option
@click.pass_obj
async def list_services(options: Options) -> None:
    """List every service with its instance, status and health."""
    from dployr.cli.client import ApiError
    from dployr.cli.instances import disk_line
    from dployr.cli.output import emit, services_table

    async with options.client() as client:
        emit(await client.services(), options.json, services_table)
        if not options.json:  # a full disk is said below the table
            try:
                found = await client.instances()
            except ApiError as error:
                if error.status != 403:  # a token limited to one service sees no instance
                    raise
                found = ()
            for instance in found:
                disk_line(instance)


@click.command()
@click.argument("name")
@json_option
@click.pass_obj
async def get(options: Options, name: str) -> None:
    """Show one service."""
    from dployr.cli.output import emit, service_lines

    async with options.client() as client:
        emit(await client.service_info(name), options.json, service_lines)


@click.command()
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--purge", is_flag=True, help="Also remove its data folder ($DPLOYR_DATA_DIR).")
@click.option(
    "--purge-image",
    is_flag=True,
    help="Also remove its container images from podman's store (kept by default).",
)
@json_option
@click.pass_obj
async def delete(options: Options, name: str, yes: bool, purge: bool, purge_image: bool) -> None:
    """Stop a service and remove it, its releases and its history.

    Its data folder ($DPLOYR_DATA_DIR) is kept, so a service deployed again under the same
    name finds its files, unless --purge. The source repository is never touched.
    """
    from dployr.cli.output import emit
    from dployr.errors import DployrError

    what = (
        "its releases, its history and its data folder"
        if purge
        else ("its releases and its history (its data folder stays)")
    )
    if not yes:
        if not sys.stdin.isatty():
            raise DployrError(f"refusing to delete {name} without --yes (not on a terminal)")
        if not click.confirm(f"Delete service {name}, {what}?"):
            click.echo("not deleted")  # the answer asked for, not a failure
            return
    async with options.client() as client:
        result = await client.delete(name, purge=purge, purge_image=purge_image)
    emit(result, options.json, lambda deleted: click.echo(f"deleted {deleted.name}"))
