"""``dployr deployments NAME``: a service's deploy history."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncclick as click

from dployr.cli import Options, json_option

if TYPE_CHECKING:
    from dployr.models import Deployment


@click.command()
@click.argument("name")
@click.option("--limit", "-n", default=20, show_default=True, type=click.IntRange(1, 1000))
@json_option
@click.pass_obj
async def deployments(options: Options, name: str, limit: int) -> None:
    """List a service's deployments, newest first; '*' marks the active one.

    Deployments are numbered per service; a rollback is a deployment of its own, noted
    with the deployment it went back to.
    """
    from dployr import serde
    from dployr.cli.output import ago, print_json, table

    async with options.client() as client:
        records = await client.deployments(name, limit=limit)
        active = (await client.service_info(name)).deployment

    if options.json:  # each record as the daemon has it, and whether it is the active one
        print_json([{**serde.unstructure(r), "active": r.id == active} for r in records])
        return
    if not records:
        click.echo(f"{name} has no deployments yet")
        return
    table(
        ["", "id", "status", "revision", "created", "note"],
        [
            [
                "*" if r.id == active else "",
                r.id,
                r.status.value,
                (r.revision or "-")[:12],
                ago(r.created_at),
                _note(r),
            ]
            for r in records
        ],
    )


def _note(record: Deployment) -> str:
    """A rollback's target, and a failure's reason."""
    parts = []
    if record.rollback_of is not None:
        parts.append(f"rollback to {record.rollback_of}")
    if record.error:
        parts.append(record.error)
    return ": ".join(parts)
