"""``dployr deployments NAME``: a service's deploy history."""

from __future__ import annotations

from typing import Any

import asyncclick as click

from dployr.cli import Options, json_option


@click.command()
@click.argument("name")
@click.option("--limit", "-n", default=20, show_default=True, type=click.IntRange(1, 1000))
@json_option
@click.pass_obj
async def deployments(options: Options, name: str, limit: int) -> None:
    """List a service's deployments, newest first; '*' marks the active one."""
    from dployr.cli.output import ago, emit, table

    async with options.client() as client:
        records = await client.call(
            "GET", client.service(name, "/deployments"), params={"limit": limit}
        )
        active = (await client.call("GET", client.service(name))).get("deployment")

    def show(rows: list[dict[str, Any]]) -> None:
        if not rows:
            click.echo(f"{name} has no deployments yet")
            return
        table(
            ["", "id", "status", "revision", "created", "error"],
            [
                [
                    "*" if r["id"] == active else "",
                    r["id"],
                    r["status"],
                    (r.get("revision") or "-")[:12],
                    ago(r["created_at"]),
                    r.get("error") or "",
                ]
                for r in rows
            ],
        )

    for record in records:
        record["active"] = record["id"] == active
    emit(records, options.json, show)
