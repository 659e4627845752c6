"""``dployr env set|list|unset``: a service's environment variables and secrets."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncclick as click

from dployr.cli import Options, json_option

if TYPE_CHECKING:
    from dployr.protocol.messages import EnvListing


@click.group()
def env() -> None:
    """Environment variables and secrets of a service."""


def _show(listing: EnvListing, changed: bool) -> None:
    from dployr.cli.output import visible

    if not listing.vars:
        click.echo(f"{listing.name} has no environment variables")
    for var in listing.vars:
        note = "  (secret)" if var.secret else ""
        click.echo(visible(f"{var.key}={var.value}") + note)
    if changed:
        click.echo(f"The change applies {listing.applies}.")


@env.command("set")
@click.argument("name")
@click.argument("pairs", nargs=-1, required=True, metavar="K=V...")
@click.option("--secret", is_flag=True, help="Store the values encrypted; never shown again.")
@click.option("--restart", is_flag=True, help="Restart the service now so it sees them.")
@json_option
@click.pass_obj
async def set_(
    options: Options, name: str, pairs: tuple[str, ...], secret: bool, restart: bool
) -> None:
    """Set variables; they reach the process at its next start, restart or deploy."""
    from dployr.cli.output import emit

    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="K=V")
        values[key] = value
    async with options.client() as client:
        listing = await client.set_env(name, values, secret=secret, restart=restart)
    emit(listing, options.json, lambda data: _show(data, True))


@env.command("list")
@click.argument("name")
@json_option
@click.pass_obj
async def list_(options: Options, name: str) -> None:
    """List variables (secrets masked)."""
    from dployr.cli.output import emit

    async with options.client() as client:
        listing = await client.env(name)
    emit(listing, options.json, lambda data: _show(data, False))


@env.command("unset")
@click.argument("name")
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
@click.option("--restart", is_flag=True, help="Restart the service now.")
@json_option
@click.pass_obj
async def unset(options: Options, name: str, keys: tuple[str, ...], restart: bool) -> None:
    """Remove variables; the process sees it at its next start, restart or deploy."""
    from dployr.cli.output import emit

    async with options.client() as client:
        listing = await client.unset_env(name, keys, restart=restart)
    emit(listing, options.json, lambda data: _show(data, True))
