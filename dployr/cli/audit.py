"""``dployr audit``: the changes made through the API, who made them, and the outcome."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import asyncclick as click

from dployr.cli import Options, json_option

if TYPE_CHECKING:
    from dployr.tokens import AuditRecord


@click.command()
@click.option("--service", help="Only the changes to this service.")
@click.option("--limit", "-n", default=50, show_default=True, type=click.IntRange(1, 10_000))
@json_option
@click.pass_obj
async def audit(options: Options, service: str | None, limit: int) -> None:
    """Show the audit log, newest first (needs an admin token).

    Every change asked of the API is recorded: when, the token's name (a dashboard
    session's token for the dashboard's actions), method and path, and the status
    answered, refusals included.
    """
    from dployr.cli.output import clock, emit, table

    async with options.client() as client:
        records = await client.audit(service=service, limit=limit)

    def show(rows: Sequence[AuditRecord]) -> None:
        if not rows:
            click.echo("no changes recorded yet")
            return
        table(
            ["time", "token", "method", "path", "status"],
            [[clock(r.at), r.token or "-", r.method, r.path, r.status] for r in rows],
        )

    emit(records, options.json, show)
