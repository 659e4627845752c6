"""``dployr tokens create|list|revoke``: API tokens with a scope, a service and an expiry."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import asyncclick as click

from dployr.cli import Options, json_option

if TYPE_CHECKING:
    from dployr.tokens import TokenRecord

_DURATION = re.compile(r"(\d+)\s*(m|h|d|w)")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_lifetime(text: str) -> int:
    """Seconds in a lifetime such as ``30d``, ``12h``, ``2w`` or ``90m``."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise click.BadParameter(f"{text!r} is not a lifetime such as 90m, 12h, 30d or 2w")
    return int(match.group(1)) * _UNITS[match.group(2)]


@click.group()
def tokens() -> None:
    """Create, list and revoke API tokens (needs an admin token).

    A token's scope is read (status, logs, metrics, settings, the masked environment),
    deploy (also deploy, start, stop, restart, roll back, settings, environment) or admin
    (everything). --service limits a token to one service.
    """


@tokens.command()
@click.argument("name")
@click.option(
    "--scope",
    required=True,
    type=click.Choice(["read", "deploy", "admin"]),
    help="What the token may do.",
)
@click.option("--service", help="Limit the token to this service.")
@click.option("--expires-in", "expires_in", help="End the token after this long: 90m, 12h, 30d.")
@json_option
@click.pass_obj
async def create(
    options: Options, name: str, scope: str, service: str | None, expires_in: str | None
) -> None:
    """Create a token and print it: the only time it is shown."""
    from dployr import serde
    from dployr.cli.output import print_json

    lifetime = None if expires_in is None else parse_lifetime(expires_in)
    async with options.client() as client:
        created = await client.create_token(name, scope, service=service, expires_in=lifetime)
    record = created.record
    if options.json:
        print_json({**serde.unstructure(record), "token": created.token})
        return
    click.echo(created.token)
    limits = f" for the service {record.service}" if record.service else ""
    sys.stderr.write(
        f"created the {record.scope.value} token {record.name!r}{limits}, "
        f"{_expiry(record.expires_at)}: it is shown only this once\n"
    )


@tokens.command("list")
@json_option
@click.pass_obj
async def list_tokens(options: Options) -> None:
    """List the API tokens (never the tokens themselves)."""
    from dployr.cli.output import ago, clock, emit, table

    async with options.client() as client:
        listed = await client.tokens()

    def show(rows: Sequence[TokenRecord]) -> None:
        table(
            ["name", "scope", "service", "created", "expires", "last used"],
            [
                [
                    r.name,
                    r.scope.value,
                    r.service or "(every)",
                    clock(r.created_at),
                    clock(r.expires_at) if r.expires_at else "never",
                    ago(r.last_used_at) if r.last_used_at else "never",
                ]
                for r in rows
            ],
        )

    emit(listed, options.json, show)


@tokens.command()
@click.argument("name")
@json_option
@click.pass_obj
async def revoke(options: Options, name: str) -> None:
    """Revoke a token: requests and dashboard sessions with it are refused at once."""
    from dployr.cli.output import emit

    async with options.client() as client:
        result = await client.revoke_token(name)
    emit(result, options.json, lambda revoked: click.echo(f"revoked the token {revoked.name!r}"))


def _expiry(expires_at: float | None) -> str:
    from dployr.cli.output import clock

    return f"expiring {clock(expires_at)}" if expires_at else "never expiring"
