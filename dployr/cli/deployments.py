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
    """List a service's deployments, newest first; '*' marks the active one.

    Deployments are numbered per service; a rollback is a deployment of its own, noted
    with the deployment it went back to.
    """
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
            ["", "id", "status", "revision", "created", "note"],
            [
                [
                    "*" if r["id"] == active else "",
                    r["id"],
                    r["status"],
                    (r.get("revision") or "-")[:12],
                    ago(r["created_at"]),
                    _note(r),
                ]
                for r in rows
            ],
        )

    for record in records:
        record["active"] = record["id"] == active
    emit(records, options.json, show)


def _note(record: dict[str, Any]) -> str:
    """A rollback's target, and a failure's reason."""
    parts = []
    if record.get("rollback_of") is not None:
        parts.append(f"rollback to {record['rollback_of']}")
    if record.get("error"):
        parts.append(str(record["error"]))
    return ": ".join(parts)
